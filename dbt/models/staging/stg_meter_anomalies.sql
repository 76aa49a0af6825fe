-- Anomaly findings, one row per (meter, reading, type, detector).
with source as (
    select * from {{ source('lake', 'meter_anomalies') }}
),

deduplicated as (
    select
        *,
        row_number() over (
            partition by meter_id, reading_ts, anomaly_type, detector
            order by _loaded_at desc, score desc nulls last
        ) as copy_rank
    from source
)

select
    cast(meter_id as varchar(64)) as meter_id,
    reading_ts,
    {{ reading_hour('reading_ts') }} as hour_start,
    cast({{ to_local(interval_start('reading_ts')) }} as date) as business_date,
    cast(anomaly_type as varchar(32)) as anomaly_type,
    cast(severity as varchar(16)) as severity,
    score,
    cast(detector as varchar(64)) as detector,
    details,
    _loaded_at
from deduplicated
where copy_rank = 1
