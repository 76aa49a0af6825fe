-- Consumption against temperature per business day and region: totals, degree days and the
-- Pearson correlation of hourly regional consumption with hourly temperature (null when undefined).
with hourly as (
    select
        business_date,
        region,
        hour_start,
        sum(consumption_kwh) as consumption_kwh,
        sum(meters_reporting) as meters_reporting,
        avg(avg_temperature_celsius) as temperature_celsius,
        avg(avg_apparent_temperature_celsius) as apparent_temperature_celsius,
        avg(avg_energy_demand_factor) as energy_demand_factor
    from {{ ref('fct_smart_meter_analytics') }}
    group by business_date, region, hour_start
)

select
    business_date,
    region,
    count(*) as hours,
    sum(consumption_kwh) as consumption_kwh,
    avg(temperature_celsius) as avg_temperature_celsius,
    min(temperature_celsius) as min_temperature_celsius,
    max(temperature_celsius) as max_temperature_celsius,
    avg(apparent_temperature_celsius) as avg_apparent_temperature_celsius,
    greatest(15 - avg(temperature_celsius), 0) as heating_degree_days,
    avg(energy_demand_factor) as avg_energy_demand_factor,
    count(temperature_celsius) as hours_with_weather,
    -- undefined (null) with fewer than 3 hours or a constant series; never NaN
    case
        when
            count(temperature_celsius) >= 3
            and stddev_pop(temperature_celsius) > 0 and stddev_pop(consumption_kwh) > 0
            then corr(consumption_kwh, temperature_celsius)
    end as consumption_temperature_correlation
from hourly
group by business_date, region
