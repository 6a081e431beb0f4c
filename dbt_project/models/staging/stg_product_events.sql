-- One row per product event: typed and normalised raw_product_events.
select
    cast(event_id as integer) as event_id,
    cast(customer_id as integer) as customer_id,
    cast(product_id as integer) as product_id,
    lower(trim(event_type)) as event_type,
    cast(event_ts as timestamp) as event_ts,
    cast(event_ts as date) as event_date
from {{ ref('raw_product_events') }}
