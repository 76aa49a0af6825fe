-- Daily consumption per Europe/Berlin business day, region and load profile: measured energy
-- (`consumption_kwh`, from validated readings) and substituted energy (`substituted_kwh`, flagged
-- substitute values of missing quarter-hours) side by side, never mixed; `total_kwh` adds them.
-- A meter whose day holds substitutes only counts among the meters (it was due), with no readings.
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
        sum(substituted_kwh) as substituted_kwh,
        sum(export_kwh) as export_kwh,
        sum(reading_count) as reading_count,
        sum(substituted_quarter_hours) as substituted_readings,
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
        sum(substituted_readings) as substituted_readings,
        sum(consumption_kwh) as consumption_kwh,
        sum(substituted_kwh) as substituted_kwh,
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
    substituted_readings,
    expected_readings,
    consumption_kwh,
    substituted_kwh,
    consumption_kwh + substituted_kwh as total_kwh,
    export_kwh,
    consumption_kwh - export_kwh as net_kwh,
    avg_consumption_kwh_per_meter,
    max_meter_hour_kwh,
    flagged_readings,
    reading_count * 1.0 / expected_readings as completeness
from due
