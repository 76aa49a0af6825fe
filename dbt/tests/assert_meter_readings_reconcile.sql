-- Reconciliation: for every hour, the hourly fact holds exactly the distinct raw readings
-- (count) and their kWh (sum, same copy chosen as staging), computed here from the raw
-- source independently of staging. Returns the hours that disagree.
with raw_ranked as (
    select
        meter_id,
        reading_ts,
        consumption_kwh,
        row_number() over (partition by meter_id, reading_ts order by {{ reading_dedup_order() }}) as copy_rank
    from {{ source('lake', 'meter_readings') }}
),

raw_hours as (
    select
        {{ reading_hour('reading_ts') }} as hour_start,
        count(*) as readings,
        sum(consumption_kwh) as consumption_kwh
    from raw_ranked
    where copy_rank = 1
    group by hour_start
),

fact_hours as (
    select
        hour_start,
        sum(reading_count) as readings,
        sum(consumption_kwh) as consumption_kwh
    from {{ ref('fct_meter_readings_hourly') }}
    group by hour_start
)

select
    coalesce(r.hour_start, f.hour_start) as hour_start,
    r.readings as raw_readings,
    f.readings as fact_readings,
    r.consumption_kwh as raw_kwh,
    f.consumption_kwh as fact_kwh
from raw_hours as r
full outer join fact_hours as f on r.hour_start = f.hour_start
where
    coalesce(r.readings, -1) <> coalesce(f.readings, -1)
    or abs(coalesce(r.consumption_kwh, 0) - coalesce(f.consumption_kwh, 0)) > 0.000001
