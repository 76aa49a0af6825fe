-- Weather observations per city, source and time, deduplicated, with heat index, wind chill
-- and apparent temperature.
with source as (
    select * from {{ source('lake', 'weather') }}
),

deduplicated as (
    select
        *,
        row_number() over (
            partition by city, source, observed_at
            order by ingested_at desc nulls last, _loaded_at desc
        ) as copy_rank
    from source
),

converted as (
    select
        *,
        temperature_celsius * 9.0 / 5.0 + 32 as temperature_f,
        wind_speed_ms * 3.6 as wind_speed_kmh
    from deduplicated
    where copy_rank = 1
),

derived as (
    select
        *,
        -- NOAA heat index (Rothfusz regression, degrees F), meaningful from 80 F (26.7 C)
        case
            when temperature_f >= 80 and humidity_percent is not null
                then
                    (
                        -42.379 + 2.04901523 * temperature_f + 10.14333127 * humidity_percent
                        - 0.22475541 * temperature_f * humidity_percent
                        - 0.00683783 * temperature_f * temperature_f
                        - 0.05481717 * humidity_percent * humidity_percent
                        + 0.00122874 * temperature_f * temperature_f * humidity_percent
                        + 0.00085282 * temperature_f * humidity_percent * humidity_percent
                        - 0.00000199 * temperature_f * temperature_f * humidity_percent * humidity_percent
                        - 32
                    ) * 5.0 / 9.0
            else temperature_celsius
        end as heat_index_celsius,
        -- Environment Canada / JAG/TI wind chill, defined for T <= 10 C and wind > 4.8 km/h
        case
            when temperature_celsius <= 10 and wind_speed_kmh > 4.8
                then
                    13.12 + 0.6215 * temperature_celsius - 11.37 * power(wind_speed_kmh, 0.16)
                    + 0.3965 * temperature_celsius * power(wind_speed_kmh, 0.16)
            else temperature_celsius
        end as wind_chill_celsius
    from converted
)

select
    cast(city as varchar(64)) as city,
    cast(source as varchar(32)) as source,
    observed_at,
    date_trunc('hour', observed_at) as hour_start,
    cast(date_trunc('hour', observed_at) as date) as observed_date_utc,
    cast({{ to_local('observed_at') }} as date) as business_date,
    temperature_celsius,
    humidity_percent,
    pressure_hpa,
    wind_speed_ms,
    wind_direction_degrees,
    cloud_cover_percent,
    visibility_km,
    energy_demand_factor,
    heat_index_celsius,
    wind_chill_celsius,
    case
        when temperature_celsius <= 10 then wind_chill_celsius
        when temperature_celsius >= 26.7 then heat_index_celsius
        else temperature_celsius
    end as apparent_temperature_celsius,
    greatest(15 - temperature_celsius, 0) / 24.0 as heating_degree_days,
    greatest(temperature_celsius - 22, 0) / 24.0 as cooling_degree_days,
    ingested_at,
    _loaded_at
from derived
