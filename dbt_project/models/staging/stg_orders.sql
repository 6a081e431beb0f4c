-- One row per order: typed and normalised raw_orders, with the status flags the marts use.
select
    cast(order_id as integer) as order_id,
    cast(customer_id as integer) as customer_id,
    cast(order_date as date) as order_date,
    lower(trim(status)) as status,
    cast(amount as decimal(12, 2)) as amount,
    lower(trim(status)) = 'cancelled' as is_cancelled,
    lower(trim(status)) = 'returned' as is_returned,
    -- Net revenue: what the customer kept (not cancelled, not returned).
    case when lower(trim(status)) in ('placed', 'shipped') then cast(amount as decimal(12, 2)) else 0 end
        as net_amount
from {{ ref('raw_orders') }}
