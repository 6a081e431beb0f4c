{#-
  One row per customer who signed up on or before as_of_date: behavioural features observed up to
  as_of_date (nothing later is read) and the churn label.

  Portable SQL (DuckDB and Postgres): `date - date` is a whole number of days and `date - integer`
  a date in both; no DuckDB-only function is used. loaded_at uses dbt.current_timestamp().
-#}
{%- set as_of = as_of_date() -%}
{%- set churn_window = var('churn_window_days') | int -%}

with customers as (
    select * from {{ ref('stg_customers') }}
    where signup_date <= {{ as_of }}
),

orders as (
    select * from {{ ref('stg_orders') }}
    where order_date <= {{ as_of }}
),

events as (
    select * from {{ ref('stg_product_events') }}
    where event_date <= {{ as_of }}
),

order_stats as (
    select
        customer_id,
        count(*) as orders_count,
        sum(case when is_cancelled or is_returned then 0 else 1 end) as kept_orders_count,
        sum(case when is_returned then 1 else 0 end) as returned_count,
        sum(case when is_cancelled then 1 else 0 end) as cancelled_count,
        sum(net_amount) as total_spend,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        sum(case when order_date > {{ as_of_minus_days(365) }} and not is_cancelled then 1 else 0 end)
            as orders_365d,
        sum(case when order_date > {{ as_of_minus_days(365) }} then net_amount else 0 end) as spend_365d
    from orders
    group by customer_id
),

event_stats as (
    select
        customer_id,
        sum(case when event_date > {{ as_of_minus_days(30) }} then 1 else 0 end) as events_30d,
        sum(case when event_date > {{ as_of_minus_days(30) }} and event_type = 'add_to_cart' then 1 else 0 end)
            as cart_adds_30d,
        count(distinct case when event_type = 'view' then product_id end) as distinct_products_viewed,
        max(event_date) as last_event_date
    from events
    group by customer_id
)

select
    c.customer_id,
    c.signup_date,
    c.country,
    c.plan,
    c.marketing_opt_in,
    cast({{ days_between('c.signup_date', as_of) }} as integer) as tenure_days,
    cast(coalesce(o.orders_count, 0) as integer) as orders_count,
    cast(coalesce(o.total_spend, 0) as decimal(14, 2)) as total_spend,
    cast(coalesce(1.0 * o.total_spend / nullif(o.kept_orders_count, 0), 0) as decimal(12, 2)) as avg_order_value,
    o.first_order_date,
    o.last_order_date,
    cast({{ days_between('o.last_order_date', as_of) }} as integer) as days_since_last_order,
    cast(coalesce(1.0 * o.returned_count / nullif(o.orders_count, 0), 0) as decimal(6, 4)) as returned_ratio,
    cast(coalesce(1.0 * o.cancelled_count / nullif(o.orders_count, 0), 0) as decimal(6, 4)) as cancelled_ratio,
    cast(coalesce(o.orders_365d, 0) as integer) as orders_365d,
    cast(coalesce(o.spend_365d, 0) as decimal(14, 2)) as spend_365d,
    cast(coalesce(e.events_30d, 0) as integer) as events_30d,
    cast(coalesce(e.cart_adds_30d, 0) as integer) as cart_adds_30d,
    cast(coalesce(e.distinct_products_viewed, 0) as integer) as distinct_products_viewed,
    cast({{ days_between('e.last_event_date', as_of) }} as integer) as days_since_last_event,
    -- Label: no order (any status) in the churn window, i.e. the last order is at least
    -- churn_window_days old, or there is none.
    (o.last_order_date is null or o.last_order_date <= {{ as_of_minus_days(churn_window) }}) as churned,
    {{ as_of }} as as_of_date,
    {{ dbt.current_timestamp() }} as loaded_at
from customers as c
left join order_stats as o on o.customer_id = c.customer_id
left join event_stats as e on e.customer_id = c.customer_id
