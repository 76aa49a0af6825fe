{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='meter_id',
        on_schema_change='fail',
        tmp_relation_type=('transient' if target.type == 'snowflake' else none)
    )
}}
-- Every meter seen in the validated readings or the anomaly findings: its first reading, whether
-- the registry knows it, and when the registry last caught up with it after it had been seen
-- without an entry. dim_meters adds the meters the registry lacks as `unregistered`.
-- Incremental: a run recomputes the meters with rows loaded since the last run and the meters
-- still unregistered (the registry may have caught up), so its cost follows the new data.
with registry as (
    select
        meter_id,
        _loaded_at
    from {{ ref('stg_meter_registry') }}
),

arrived as (
    select
        readings.meter_id,
        readings.reading_ts,
        readings._loaded_at
    from {{ ref('stg_meter_readings') }} as readings
    {% if is_incremental() %}
    where readings._loaded_at > {{ loaded_watermark() }}
    {% endif %}
    union all
    select
        anomalies.meter_id,
        anomalies.reading_ts,
        anomalies._loaded_at
    from {{ ref('stg_meter_anomalies') }} as anomalies
    {% if is_incremental() %}
    where anomalies._loaded_at > {{ loaded_watermark() }}
    {% endif %}
),

new_rows as (
    select
        meter_id,
        min(reading_ts) as first_seen_at,
        max(_loaded_at) as _loaded_at
    from arrived
    group by meter_id
),

{% if is_incremental() %}
previous as (
    select existing.*
    from {{ this }} as existing
    where
        not existing.is_registered
        or existing.meter_id in (select new_rows.meter_id from new_rows)
),

merged as (
    select
        coalesce(n.meter_id, p.meter_id) as meter_id,
        case
            when p.first_seen_at is null or n.first_seen_at < p.first_seen_at then n.first_seen_at
            else p.first_seen_at
        end as first_seen_at,
        p.is_registered as was_registered,
        p.registry_caught_up_at as previous_caught_up_at,
        case
            when p._loaded_at is null or n._loaded_at > p._loaded_at then n._loaded_at
            else p._loaded_at
        end as _loaded_at
    from new_rows as n
    full outer join previous as p on n.meter_id = p.meter_id
)
{% else %}
merged as (
    select
        meter_id,
        first_seen_at,
        cast(null as boolean) as was_registered,
        cast(null as timestamp) as previous_caught_up_at,
        _loaded_at
    from new_rows
)
{% endif %}

select
    m.meter_id,
    m.first_seen_at,
    case when r.meter_id is not null then true else false end as is_registered,
    case
        when not m.was_registered and r.meter_id is not null then r._loaded_at
        else m.previous_caught_up_at
    end as registry_caught_up_at,
    m._loaded_at
from merged as m
left join registry as r on m.meter_id = r.meter_id
