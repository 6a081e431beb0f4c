-- One row per customer: typed and normalised raw_customers.
select
    cast(customer_id as integer) as customer_id,
    cast(signup_date as date) as signup_date,
    upper(trim(country)) as country,
    lower(trim(plan)) as plan,
    cast(marketing_opt_in as boolean) as marketing_opt_in
from {{ ref('raw_customers') }}
