{#- The observation date of the build (project var `as_of_date`), as a SQL date literal. -#}
{% macro as_of_date() -%}
    cast('{{ var("as_of_date") }}' as date)
{%- endmacro %}

{#- Whole days from `earlier` to `later` (both dates). `date - date` is an integer number of days
    in both DuckDB and Postgres. -#}
{% macro days_between(earlier, later) -%}
    ({{ later }} - {{ earlier }})
{%- endmacro %}

{#- The date `days` days before as-of: `date - integer` is a date in both DuckDB and Postgres. -#}
{% macro as_of_minus_days(days) -%}
    ({{ as_of_date() }} - {{ days }})
{%- endmacro %}
