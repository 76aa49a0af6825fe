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

-- the quarter-hours a business day has: 96 (92 / 100 on DST change days)
expected as (
    select
        business_date as bd,
        count(distinct hour_start) * 4 as reading_count_expected
    from {{ ref('fct_meter_readings_hourly') }}
    group by business_date
)

select
    meter_days.business_date,
    meter_days.region,
    meter_days.grid_operator,
    meter_days.load_profile,
    count(*) as meters,
    sum(meter_days.reading_count) as reading_count,
    sum(meter_days.consumption_kwh) as consumption_kwh,
    sum(meter_days.export_kwh) as export_kwh,
    sum(meter_days.consumption_kwh) - sum(meter_days.export_kwh) as net_kwh,
    avg(meter_days.consumption_kwh) as avg_consumption_kwh_per_meter,
    max(meter_days.peak_hour_kwh) as max_meter_hour_kwh,
    sum(meter_days.flagged_readings) as flagged_readings,
    sum(meter_days.reading_count) * 1.0 / nullif(count(*) * max(expected.reading_count_expected), 0) as completeness
from meter_days
inner join expected on meter_days.business_date = expected.bd
group by meter_days.business_date, meter_days.region, meter_days.grid_operator, meter_days.load_profile
