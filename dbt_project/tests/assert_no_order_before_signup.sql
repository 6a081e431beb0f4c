-- An order never precedes its customer's signup. Returns the offending orders.
select
    o.order_id,
    o.customer_id,
    o.order_date,
    c.signup_date
from {{ ref('stg_orders') }} as o
inner join {{ ref('stg_customers') }} as c on c.customer_id = o.customer_id
where o.order_date < c.signup_date
