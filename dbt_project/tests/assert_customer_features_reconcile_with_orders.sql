-- customer_features agrees with the orders and customers it is built from: one row per customer
-- signed up by as_of_date, orders_count and total_spend equal to the orders up to as_of_date,
-- total_spend never negative, and the churn label consistent with days_since_last_order.
-- Returns one row per discrepancy, with its reason.
{%- set as_of = as_of_date() %}

with expected as (
    select
        c.customer_id,
        count(o.order_id) as orders_count,
        coalesce(sum(o.net_amount), 0) as total_spend
    from {{ ref('stg_customers') }} as c
    left join {{ ref('stg_orders') }} as o
        on o.customer_id = c.customer_id and o.order_date <= {{ as_of }}
    where c.signup_date <= {{ as_of }}
    group by c.customer_id
),

features as (
    select * from {{ ref('customer_features') }}
)

select e.customer_id, 'missing from customer_features' as reason
from expected as e
left join features as f on f.customer_id = e.customer_id
where f.customer_id is null

union all

select f.customer_id, 'orders_count or total_spend differ from stg_orders' as reason
from features as f
inner join expected as e on e.customer_id = f.customer_id
where f.orders_count <> e.orders_count or f.total_spend <> e.total_spend

union all

select customer_id, 'negative total_spend' as reason
from features
where total_spend < 0

union all

select customer_id, 'churned disagrees with days_since_last_order' as reason
from features
where churned <> (days_since_last_order is null or days_since_last_order >= {{ var('churn_window_days') }})
