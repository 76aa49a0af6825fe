-- Reconciliation: for every hour, the hourly fact holds exactly the validated readings (count)
-- and their kWh (sum), counted here from the loaded validated/ rows as they are, independently
-- of staging (validated/ holds one reading of record per reading: a second copy there would
-- show up here as a mismatch). Only the fact's MEASURED part is compared (reading_count,
-- consumption_kwh): substitute values live in their own columns and must never leak into it; an
-- hour of substitutes only has no readings on either side. Returns the hours that disagree.
with validated_hours as (
    select
        {{ reading_hour('reading_ts') }} as hour_start,
        count(*) as readings,
        sum(consumption_kwh) as consumption_kwh
    from {{ source('lake', 'meter_readings') }}
    group by {{ reading_hour('reading_ts') }}
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
    coalesce(v.hour_start, f.hour_start) as hour_start,
    v.readings as validated_readings,
    f.readings as fact_readings,
    v.consumption_kwh as validated_kwh,
    f.consumption_kwh as fact_kwh
from validated_hours as v
full outer join fact_hours as f on v.hour_start = f.hour_start
where
    coalesce(v.readings, 0) <> coalesce(f.readings, 0)
    or abs(coalesce(v.consumption_kwh, 0) - coalesce(f.consumption_kwh, 0)) > 0.000001
