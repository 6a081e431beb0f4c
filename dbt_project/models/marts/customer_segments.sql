{#-
  One row per customer: RFM (recency, frequency, monetary) scores over the year up to as_of_date
  and the segment they map to. Fixed thresholds (not quantiles), so a customer's segment depends
  on their own history only and is stable from one build to the next. Portable SQL.

    recency_days  days since the last order (any status); null when the customer never ordered
    frequency     orders not cancelled in the 365 days up to as_of_date
    monetary      net spend (placed and shipped orders) in those 365 days

  Segments, first match wins:
    new        signed up less than 60 days before as_of_date
    champion   r >= 4, f >= 4, m >= 4
    loyal      r >= 3, f >= 3
    promising  r >= 3 (ordered in the last 90 days, but rarely)
    at_risk    r = 2 (last order 90 to 180 days ago)
    dormant    otherwise (no order in 180 days, or never)
-#}

with features as (
    select * from {{ ref('customer_features') }}
),

scored as (
    select
        customer_id,
        tenure_days,
        days_since_last_order as recency_days,
        orders_365d as frequency,
        spend_365d as monetary,
        case
            when days_since_last_order is null then 1
            when days_since_last_order < 30 then 5
            when days_since_last_order < 60 then 4
            when days_since_last_order < 90 then 3
            when days_since_last_order < 180 then 2
            else 1
        end as r_score,
        case
            when orders_365d >= 15 then 5
            when orders_365d >= 8 then 4
            when orders_365d >= 4 then 3
            when orders_365d >= 1 then 2
            else 1
        end as f_score,
        case
            when spend_365d >= 750 then 5
            when spend_365d >= 350 then 4
            when spend_365d >= 150 then 3
            when spend_365d > 0 then 2
            else 1
        end as m_score
    from features
)

select
    customer_id,
    recency_days,
    frequency,
    monetary,
    r_score,
    f_score,
    m_score,
    cast(r_score as varchar) || cast(f_score as varchar) || cast(m_score as varchar) as rfm_code,
    case
        when tenure_days < 60 then 'new'
        when r_score >= 4 and f_score >= 4 and m_score >= 4 then 'champion'
        when r_score >= 3 and f_score >= 3 then 'loyal'
        when r_score >= 3 then 'promising'
        when r_score = 2 then 'at_risk'
        else 'dormant'
    end as segment,
    {{ as_of_date() }} as as_of_date,
    {{ dbt.current_timestamp() }} as loaded_at
from scored
