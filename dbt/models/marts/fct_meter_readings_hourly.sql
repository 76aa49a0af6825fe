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

{% if is_incremental() %}
with affected_hours as (
    select distinct hour_start
    from {{ ref('stg_meter_readings') }}
    where
        _loaded_at > {{ loaded_watermark() }}
        or hour_start > (
            select {{ lookback_start('max(existing.hour_start)') }} from {{ this }} as existing
        )
),

readings as (
    select r.*
    from {{ ref('stg_meter_readings') }} as r
    where r.hour_start in (select affected_hours.hour_start from affected_hours)
),
{% else %}
with readings as (
    select * from {{ ref('stg_meter_readings') }}
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

flagged as (
    select
        *,
        negative_consumption_readings + voltage_out_of_range_readings + frequency_out_of_range_readings
            as flagged_readings
    from hourly
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
    _loaded_at
from flagged
