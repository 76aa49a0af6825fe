-- Substitute values (Ersatzwerte) for missing quarter-hours, one row per (meter_id, reading_ts),
-- typed, with the fact's hour and the business day. Never measured data: the hourly fact keeps
-- them in their own columns, and drops a substitute whose quarter-hour has a measured reading
-- by now (a late reading or a released hour wins over its substitute).
with source as (
    select * from {{ source('lake', 'substituted_readings') }}
)

select
    cast(meter_id as varchar(64)) as meter_id,
    reading_ts,
    {{ interval_start('reading_ts') }} as interval_start_ts,
    {{ reading_hour('reading_ts') }} as hour_start,
    cast(business_date as date) as business_date,
    extract(hour from {{ to_local(interval_start('reading_ts')) }}) as local_hour,
    cast(substitute_kwh as double precision) as substituted_kwh,
    method as substitution_method,
    gap_reason,
    computed_at,
    _loaded_at
from source
