{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='hour_start',
        on_schema_change='fail',
        tmp_relation_type=('transient' if target.type == 'snowflake' else none)
    )
}}
-- One row per (meter_id, reading_ts) of validated/ (the quality gate already chose the reading of
-- record: the last copy in Kafka order; `delivered_copies` and `corrected` say what it collapsed),
-- typed, with time dimensions (UTC and Europe/Berlin business day) and quality flags.
-- Incremental: a run re-deduplicates only the hours that received rows since the last run
-- (all copies of a reading share its hour), so its cost follows the new data, not the history.
-- Those hours are replaced whole (delete+insert on hour_start), so a reading that vanished from
-- a re-loaded interval leaves staging too.
with source as (
    select * from {{ source('lake', 'meter_readings') }}
    {% if is_incremental() %}
    where
        {{ reading_hour('reading_ts') }} in (
            select distinct {{ reading_hour('loaded.reading_ts') }}
            from {{ source('lake', 'meter_readings') }} as loaded
            where loaded._loaded_at > {{ loaded_watermark() }}
        )
    {% endif %}
),

ranked as (
    select
        *,
        row_number() over (partition by meter_id, reading_ts order by {{ reading_dedup_order() }}) as copy_rank,
        count(*) over (partition by meter_id, reading_ts) as copies,
        max(_loaded_at) over (partition by meter_id, reading_ts) as latest_loaded_at,
        case
            when
                min(consumption_kwh) over (partition by meter_id, reading_ts)
                <> max(consumption_kwh) over (partition by meter_id, reading_ts)
                or min(voltage) over (partition by meter_id, reading_ts)
                <> max(voltage) over (partition by meter_id, reading_ts)
                then true
            else false
        end as has_conflicting_copies
    from source
),

deduplicated as (
    select * from ranked
    where copy_rank = 1
),

timed as (
    select
        *,
        {{ interval_start('reading_ts') }} as interval_start_ts,
        {{ reading_hour('reading_ts') }} as hour_start,
        {{ to_local(interval_start('reading_ts')) }} as interval_start_local
    from deduplicated
)

select
    cast(meter_id as varchar(64)) as meter_id,
    reading_ts,
    interval_start_ts,
    hour_start,
    cast(hour_start as date) as reading_date_utc,
    interval_start_local,
    cast(interval_start_local as date) as business_date,
    extract(hour from interval_start_local) as local_hour,
    {{ iso_day_of_week('interval_start_local') }} as iso_day_of_week,
    case when {{ iso_day_of_week('interval_start_local') }} in (6, 7) then true else false end as is_weekend,
    cast(consumption_kwh as double precision) as consumption_kwh,
    cast(coalesce(export_kwh, 0) as double precision) as export_kwh,
    cast(consumption_kwh - coalesce(export_kwh, 0) as double precision) as net_kwh,
    cast(consumption_kwh * 4 as double precision) as avg_power_kw,
    voltage,
    "CURRENT" as current_a,
    power_factor,
    frequency,
    temperature,
    humidity,
    case when consumption_kwh < 0 then true else false end as is_negative_consumption,
    case when voltage < {{ var('voltage_min') }} or voltage > {{ var('voltage_max') }} then true else false end
        as is_voltage_out_of_range,
    case when frequency < {{ var('frequency_min') }} or frequency > {{ var('frequency_max') }} then true else false end
        as is_frequency_out_of_range,
    greatest(coalesce(delivered_copies, 1), copies) as copies,
    coalesce(corrected, false) or has_conflicting_copies as has_conflicting_copies,
    topic,
    ingested_at,
    {{ seconds_between('reading_ts', 'ingested_at') }} as ingestion_lag_seconds,
    _interval_date,
    _interval_hour,
    latest_loaded_at as _loaded_at
from timed
