-- Daily consumption per Europe/Berlin business day, region and load profile.
with hours as (
    select f.*, d.region, d.grid_operator, d.load_profile
    from {{ ref('fct_meter_readings_hourly') }} as f
    join {{ ref('dim_meters') }} as d on d.meter_id = f.meter_id
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
)

select
    business_date,
    region,
    grid_operator,
    load_profile,
    count(*) as meters,
    sum(reading_count) as reading_count,
    sum(consumption_kwh) as consumption_kwh,
    sum(export_kwh) as export_kwh,
    sum(consumption_kwh) - sum(export_kwh) as net_kwh,
    avg(consumption_kwh) as avg_consumption_kwh_per_meter,
    max(peak_hour_kwh) as max_meter_hour_kwh,
    sum(flagged_readings) as flagged_readings,
    -- a business day has 96 quarter-hours (92 / 100 on DST change days)
    sum(reading_count) * 1.0 / nullif(count(*) * max(reading_count_expected), 0) as completeness
from meter_days
join (
    select business_date as bd, count(distinct hour_start) * 4 as reading_count_expected
    from {{ ref('fct_meter_readings_hourly') }}
    group by business_date
) as expected on expected.bd = meter_days.business_date
group by business_date, region, grid_operator, load_profile
