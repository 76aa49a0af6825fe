{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='hour_start',
        on_schema_change='fail',
        tmp_relation_type=('transient' if target.type == 'snowflake' else none)
    )
}}
-- Meter, grid and weather joined per UTC hour and region (federal state) / grid operator.
-- Incremental like the hourly fact: recomputes the hours its inputs changed in and replaces them
-- whole (delete+insert on hour_start). Meters the registry does not know (yet) have no region and
-- are left out; when the registry catches up with one, the hours of its readings are recomputed.

{% if is_incremental() %}
with watermark as (
    select {{ loaded_watermark() }} as loaded_at
),

affected_hours as (
    select hour_start from {{ ref('fct_meter_readings_hourly') }}
    where _loaded_at > (select watermark.loaded_at from watermark)
    union distinct
    select hour_start from {{ ref('fct_grid_status') }}
    where _loaded_at > (select watermark.loaded_at from watermark)
    union distinct
    select hour_start from {{ ref('fct_weather_hourly') }}
    where _loaded_at > (select watermark.loaded_at from watermark)
    union distinct
    select hour_start from {{ ref('fct_meter_readings_hourly') }}
    where meter_id in (
        select caught_up.meter_id from {{ ref('dim_meters') }} as caught_up
        where caught_up.registry_caught_up_at > (select watermark.loaded_at from watermark)
    )
),

meter_hours as (
{% else %}
with meter_hours as (
{% endif %}
    select
        f.*,
        d.region,
        d.grid_operator,
        d.load_profile,
        d.registry_caught_up_at
    from {{ ref('fct_meter_readings_hourly') }} as f
    inner join {{ ref('dim_meters') }} as d on f.meter_id = d.meter_id
    where
        d.is_registered
        and f.reading_count > 0  -- measured meter-hours only: substitutes are in the hourly fact and daily metrics
        {% if is_incremental() %}
        and f.hour_start in (select affected_hours.hour_start from affected_hours)
        {% endif %}
),

consumption as (
    select
        hour_start,
        region,
        grid_operator,
        min(business_date) as business_date,
        count(distinct meter_id) as meters_reporting,
        sum(reading_count) as reading_count,
        sum(consumption_kwh) as consumption_kwh,
        sum(export_kwh) as export_kwh,
        sum(net_kwh) as net_kwh,
        avg(consumption_kwh) as avg_consumption_kwh_per_meter,
        sum(case when is_complete then 1 else 0 end) * 1.0 / count(*) as complete_share,
        sum(case when quality_tier = 'gold' then 1 else 0 end) * 1.0 / count(*) as gold_share,
        sum(flagged_readings) as flagged_readings,
        -- a registry catch-up counts as an input change (the watermark passes it)
        max(greatest(_loaded_at, coalesce(registry_caught_up_at, _loaded_at))) as _loaded_at
    from meter_hours
    group by hour_start, region, grid_operator
),

weather as (
    select
        hour_start,
        region,
        avg(avg_temperature_celsius) as avg_temperature_celsius,
        avg(avg_humidity_percent) as avg_humidity_percent,
        avg(avg_apparent_temperature_celsius) as avg_apparent_temperature_celsius,
        avg(avg_energy_demand_factor) as avg_energy_demand_factor,
        max(_loaded_at) as _loaded_at
    from {{ ref('fct_weather_hourly') }}
    group by hour_start, region
)

select
    c.hour_start,
    c.region,
    c.grid_operator,
    c.business_date,
    c.meters_reporting,
    c.reading_count,
    c.consumption_kwh,
    c.export_kwh,
    c.net_kwh,
    c.avg_consumption_kwh_per_meter,
    c.complete_share,
    c.gold_share,
    c.flagged_readings,
    case
        when c.gold_share >= 0.95 then 'gold'
        when c.complete_share >= 0.8 then 'silver'
        else 'bronze'
    end as quality_tier,
    g.avg_load_factor as grid_load_factor,
    g.avg_frequency_hz as grid_frequency_hz,
    g.max_frequency_deviation_hz as grid_max_frequency_deviation_hz,
    g.avg_stability_score as grid_stability_score,
    g.avg_renewable_percentage as grid_renewable_percentage,
    w.avg_temperature_celsius,
    w.avg_humidity_percent,
    w.avg_apparent_temperature_celsius,
    w.avg_energy_demand_factor,
    greatest(c._loaded_at, coalesce(g._loaded_at, c._loaded_at), coalesce(w._loaded_at, c._loaded_at)) as _loaded_at
from consumption as c
left join {{ ref('fct_grid_status') }} as g
    on c.grid_operator = g.operator_name and c.hour_start = g.hour_start
left join weather as w
    on c.region = w.region and c.hour_start = w.hour_start
