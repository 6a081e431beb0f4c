{#-
  Every model and seed is built in target.schema, whatever `schema` config a node may carry:
  the platform sets DBT_SCHEMA to a fresh audit schema per build and reads the results there.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ target.schema }}
{%- endmacro %}
