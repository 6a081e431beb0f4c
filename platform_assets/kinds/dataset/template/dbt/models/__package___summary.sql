select
    churned,
    count(*) as customers,
    max(loaded_at) as loaded_at
from {{ source('analytics', 'customer_features') }}
group by churned
