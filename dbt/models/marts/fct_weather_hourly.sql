-- Hourly weather per city (averaged over sources and observations), with region and operator.
with hourly as (
    select
        city,
        hour_start,
        min(business_date) as business_date,
        count(*) as observation_count,
        count(distinct source) as source_count,
        avg(temperature_celsius) as avg_temperature_celsius,
        min(temperature_celsius) as min_temperature_celsius,
        max(temperature_celsius) as max_temperature_celsius,
        avg(humidity_percent) as avg_humidity_percent,
        avg(pressure_hpa) as avg_pressure_hpa,
        avg(wind_speed_ms) as avg_wind_speed_ms,
        avg(cloud_cover_percent) as avg_cloud_cover_percent,
        avg(visibility_km) as avg_visibility_km,
        avg(energy_demand_factor) as avg_energy_demand_factor,
        avg(heat_index_celsius) as avg_heat_index_celsius,
        avg(wind_chill_celsius) as avg_wind_chill_celsius,
        avg(apparent_temperature_celsius) as avg_apparent_temperature_celsius,
        max(_loaded_at) as _loaded_at
    from {{ ref('stg_weather') }}
    group by city, hour_start
)

select
    hourly.city,
    cities.region,
    cities.grid_operator,
    hourly.hour_start,
    hourly.business_date,
    hourly.observation_count,
    hourly.source_count,
    hourly.avg_temperature_celsius,
    hourly.min_temperature_celsius,
    hourly.max_temperature_celsius,
    hourly.avg_humidity_percent,
    hourly.avg_pressure_hpa,
    hourly.avg_wind_speed_ms,
    hourly.avg_cloud_cover_percent,
    hourly.avg_visibility_km,
    hourly.avg_energy_demand_factor,
    hourly.avg_heat_index_celsius,
    hourly.avg_wind_chill_celsius,
    hourly.avg_apparent_temperature_celsius,
    hourly._loaded_at
from hourly
left join {{ ref('cities') }} as cities on hourly.city = cities.city
