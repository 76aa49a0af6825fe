-- Grid status per operator and timestamp, deduplicated, with utilisation and frequency flags.
with source as (
    select * from {{ source('lake', 'grid_status') }}
),

deduplicated as (
    select
        *,
        row_number() over (
            partition by operator_name, reading_ts
            order by ingested_at desc nulls last, _loaded_at desc, grid_stability_score desc nulls last
        ) as copy_rank
    from source
)

select
    cast(operator_name as varchar(32)) as operator_name,
    reading_ts,
    date_trunc('hour', reading_ts) as hour_start,
    cast(date_trunc('hour', reading_ts) as date) as reading_date_utc,
    cast({{ to_local('reading_ts') }} as date) as business_date,
    region,
    total_capacity_mw,
    available_capacity_mw,
    case when total_capacity_mw > 0 then 1 - available_capacity_mw / total_capacity_mw end as utilization_rate,
    load_factor,
    frequency_hz,
    abs(frequency_hz - 50) as frequency_deviation_hz,
    case
        when frequency_hz < {{ var('frequency_min') }} or frequency_hz > {{ var('frequency_max') }} then true
        else false
    end as is_frequency_excursion,
    voltage_kv,
    grid_stability_score,
    renewable_percentage,
    ingested_at,
    _loaded_at
from deduplicated
where copy_rank = 1
