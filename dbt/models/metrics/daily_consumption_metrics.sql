-- Daily consumption per Europe/Berlin business day, region and load profile.
with hours as (
    select
        f.*,
        d.region,
        d.grid_operator,
        d.load_profile
    from {{ ref('fct_meter_readings_hourly') }} as f
    inner join {{ ref('dim_meters') }} as d on f.meter_id = d.meter_id
),

meter_days as (
    select
        business_date,
        region,
        grid_operator,
        load_profile,
        meter_id,
        sum(consumption_kwh) as consumption_kwh,
        sum(export_kwh) as export_kwh,
        sum(reading_count) as reading_count,
        max(consumption_kwh) as peak_hour_kwh,
        sum(flagged_readings) as flagged_readings
    from hours
    group by business_date, region, grid_operator, load_profile, meter_id
),

fleet as (
    select
        business_date,
        region,
        grid_operator,
        load_profile,
        count(*) as meters,
        sum(reading_count) as reading_count,
        sum(consumption_kwh) as consumption_kwh,
        sum(export_kwh) as export_kwh,
        avg(consumption_kwh) as avg_consumption_kwh_per_meter,
        max(peak_hour_kwh) as max_meter_hour_kwh,
        sum(flagged_readings) as flagged_readings
    from meter_days
    group by business_date, region, grid_operator, load_profile
),

-- readings due: every meter that reported that day, for every quarter-hour of the business day
-- in the calendar (96; 92 / 100 when the clocks change), whatever hours had data
due as (
    select
        *,
        meters * {{ quarter_hours_in_local_day('business_date') }} as expected_readings
    from fleet
)

select
    business_date,
    region,
    grid_operator,
    load_profile,
    meters,
    reading_count,
    expected_readings,
    consumption_kwh,
    export_kwh,
    consumption_kwh - export_kwh as net_kwh,
    avg_consumption_kwh_per_meter,
    max_meter_hour_kwh,
    flagged_readings,
    reading_count * 1.0 / expected_readings as completeness
from due
