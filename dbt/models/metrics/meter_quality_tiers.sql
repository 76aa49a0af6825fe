-- Quality tier per meter and business day, from completeness, plausibility flags and
-- conflicting duplicates of its readings. Completeness is the meter's readings over the
-- quarter-hours of the business day in the calendar (96; 92 / 100 when the clocks change),
-- not over the hours it reported in. Substitute values never count as readings here.
with days as (
    select
        meter_id,
        business_date,
        sum(reading_count) as reading_count,
        count(*) as hours,
        sum(case when is_complete then 1 else 0 end) as complete_hours,
        sum(flagged_readings) as flagged_readings,
        sum(conflicting_readings) as conflicting_readings
    from {{ ref('fct_meter_readings_hourly') }}
    where reading_count > 0  -- measured hours only (an hour of substitutes only is not a reported hour)
    group by meter_id, business_date
),

due as (
    select
        *,
        {{ quarter_hours_in_local_day('business_date') }} as expected_readings
    from days
),

measured as (
    select
        *,
        least(reading_count * 1.0 / expected_readings, 1) as completeness
    from due
),

scored as (
    select
        *,
        completeness
        * greatest(1 - (flagged_readings + conflicting_readings) * 1.0 / nullif(reading_count, 0), 0) as quality_score
    from measured
)

select
    meter_id,
    business_date,
    reading_count,
    expected_readings,
    completeness,
    hours,
    complete_hours,
    flagged_readings,
    conflicting_readings,
    quality_score,
    case
        when quality_score >= 0.99 then 'gold'
        when quality_score >= 0.9 then 'silver'
        else 'bronze'
    end as quality_tier
from scored
