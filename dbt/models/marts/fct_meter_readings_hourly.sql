{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='hour_start',
        on_schema_change='fail',
        tmp_relation_type=('transient' if target.type == 'snowflake' else none)
    )
}}
-- Hourly energy per meter (UTC hour the 15-minute intervals start in). Incremental: a run
-- recomputes whole meter-hours for (a) every hour touched by rows loaded since the last run,
-- however late they arrived, and (b) the last `lookback_hours` hours, for every meter;
-- delete+insert on hour_start replaces those hours whole, so late data never duplicates an hour
-- and a meter-hour whose readings vanished from the source disappears.
-- Measured and substituted energy stay apart: `reading_count` / `consumption_kwh` hold measured
-- (validated) readings only; substitute values of missing quarter-hours are in
-- `substituted_quarter_hours` / `substituted_kwh` with their `substitution_methods`, and
-- `total_kwh` is their sum. A substitute whose quarter-hour has a measured reading by now is
-- dropped (measured wins). A meter-hour with substitutes only has reading_count 0.

{% if is_incremental() %}
with affected_hours as (
    select distinct hour_start
    from {{ ref('stg_meter_readings') }}
    where
        _loaded_at > {{ loaded_watermark() }}
        or hour_start > (
            select {{ lookback_start('max(existing.hour_start)') }} from {{ this }} as existing
        )
    union distinct
    select distinct hour_start
    from {{ ref('stg_substituted_readings') }}
    where _loaded_at > {{ loaded_watermark() }}
    union distinct
    -- hours whose substitutes all left the source (a day re-substituted after a release)
    select distinct filled.hour_start
    from {{ this }} as filled
    where
        filled.substituted_quarter_hours > 0
        and filled.hour_start not in (select still.hour_start from {{ ref('stg_substituted_readings') }} as still)
),

readings as (
    select r.*
    from {{ ref('stg_meter_readings') }} as r
    where r.hour_start in (select affected_hours.hour_start from affected_hours)
),

substituted as (
    select s.*
    from {{ ref('stg_substituted_readings') }} as s
    where s.hour_start in (select affected_hours.hour_start from affected_hours)
),
{% else %}
with readings as (
    select * from {{ ref('stg_meter_readings') }}
),

substituted as (
    select * from {{ ref('stg_substituted_readings') }}
),
{% endif %}

hourly as (
    select
        meter_id,
        hour_start,
        min(business_date) as business_date,
        min(extract(hour from interval_start_local)) as local_hour,
        count(*) as reading_count,
        sum(consumption_kwh) as consumption_kwh,
        sum(export_kwh) as export_kwh,
        sum(net_kwh) as net_kwh,
        max(avg_power_kw) as peak_power_kw,
        avg(voltage) as avg_voltage,
        min(voltage) as min_voltage,
        max(voltage) as max_voltage,
        avg(frequency) as avg_frequency,
        avg(power_factor) as avg_power_factor,
        avg(temperature) as avg_temperature,
        sum(case when is_negative_consumption then 1 else 0 end) as negative_consumption_readings,
        sum(case when is_voltage_out_of_range then 1 else 0 end) as voltage_out_of_range_readings,
        sum(case when is_frequency_out_of_range then 1 else 0 end) as frequency_out_of_range_readings,
        sum(copies - 1) as duplicate_copies,
        sum(case when has_conflicting_copies then 1 else 0 end) as conflicting_readings,
        max(_loaded_at) as _loaded_at
    from readings
    group by meter_id, hour_start
),

-- substitutes of quarter-hours still without a measured reading (a measured one wins)
open_substitutes as (
    select s.*
    from substituted as s
    left join readings as r on s.meter_id = r.meter_id and s.reading_ts = r.reading_ts
    where r.meter_id is null
),

substitute_methods as (
    select distinct
        meter_id,
        hour_start,
        substitution_method
    from open_substitutes
),

substituted_hourly as (
    select
        s.meter_id,
        s.hour_start,
        min(s.business_date) as business_date,
        min(s.local_hour) as local_hour,
        count(*) as substituted_quarter_hours,
        sum(s.substituted_kwh) as substituted_kwh,
        max(s._loaded_at) as _loaded_at
    from open_substitutes as s
    group by s.meter_id, s.hour_start
),

method_lists as (
    select
        meter_id,
        hour_start,
        {{ sorted_list('substitution_method') }} as substitution_methods
    from substitute_methods
    group by meter_id, hour_start
),

flagged as (
    select
        coalesce(h.meter_id, s.meter_id) as meter_id,
        coalesce(h.hour_start, s.hour_start) as hour_start,
        coalesce(h.business_date, s.business_date) as business_date,
        coalesce(h.local_hour, s.local_hour) as local_hour,
        coalesce(h.reading_count, 0) as reading_count,
        coalesce(h.consumption_kwh, 0) as consumption_kwh,
        coalesce(h.export_kwh, 0) as export_kwh,
        coalesce(h.net_kwh, 0) as net_kwh,
        h.peak_power_kw,
        h.avg_voltage,
        h.min_voltage,
        h.max_voltage,
        h.avg_frequency,
        h.avg_power_factor,
        h.avg_temperature,
        coalesce(h.negative_consumption_readings, 0) as negative_consumption_readings,
        coalesce(h.voltage_out_of_range_readings, 0) as voltage_out_of_range_readings,
        coalesce(h.frequency_out_of_range_readings, 0) as frequency_out_of_range_readings,
        coalesce(h.duplicate_copies, 0) as duplicate_copies,
        coalesce(h.conflicting_readings, 0) as conflicting_readings,
        coalesce(
            h.negative_consumption_readings + h.voltage_out_of_range_readings + h.frequency_out_of_range_readings, 0
        ) as flagged_readings,
        coalesce(s.substituted_quarter_hours, 0) as substituted_quarter_hours,
        coalesce(s.substituted_kwh, 0) as substituted_kwh,
        m.substitution_methods,
        greatest(coalesce(h._loaded_at, s._loaded_at), coalesce(s._loaded_at, h._loaded_at)) as _loaded_at
    from hourly as h
    full outer join substituted_hourly as s on h.meter_id = s.meter_id and h.hour_start = s.hour_start
    left join method_lists as m
        on coalesce(h.meter_id, s.meter_id) = m.meter_id and coalesce(h.hour_start, s.hour_start) = m.hour_start
)

select
    meter_id,
    hour_start,
    business_date,
    local_hour,
    reading_count,
    case when reading_count = 4 then true else false end as is_complete,
    consumption_kwh,
    export_kwh,
    net_kwh,
    peak_power_kw,
    avg_voltage,
    min_voltage,
    max_voltage,
    avg_frequency,
    avg_power_factor,
    avg_temperature,
    negative_consumption_readings,
    voltage_out_of_range_readings,
    frequency_out_of_range_readings,
    duplicate_copies,
    conflicting_readings,
    flagged_readings,
    case
        when reading_count = 4 and conflicting_readings = 0 and flagged_readings = 0 then 'gold'
        when reading_count >= 3 and flagged_readings <= 1 then 'silver'
        else 'bronze'
    end as quality_tier,
    substituted_quarter_hours,
    substituted_kwh,
    consumption_kwh + substituted_kwh as total_kwh,
    substitution_methods,
    _loaded_at
from flagged
