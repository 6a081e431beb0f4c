-- Order amounts are never negative. Returns the offending orders.
select
    order_id,
    customer_id,
    amount
from {{ ref('stg_orders') }}
where amount < 0
