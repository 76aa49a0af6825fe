{{ config(tags=['forecast']) }}
-- Forecast against actual load per series and Europe/Berlin day, on quarter-hours: the actual of
-- a series is the summed consumption of the meters the registry puts in it (region, or
-- grid_operator for a control area), as `metrify.forecast.series` builds the model's history,
-- read from the deduplicated 15-minute readings (stg_meter_readings). Only quarter-hours with
-- both a forecast and at least one reading are compared; a day without readings has no row.
with forecast as (
    select * from {{ ref('fct_load_forecast') }}
),

members as (
    select
        meter_id,
        'region' as series_kind,
        region as series
    from {{ ref('stg_meter_registry') }}
    where region is not null
    union all
    select
        meter_id,
        'control_area' as series_kind,
        grid_operator as series
    from {{ ref('stg_meter_registry') }}
    where grid_operator is not null
),

actual as (
    select
        m.series_kind,
        m.series,
        r.interval_start_ts as interval_start,
        sum(r.consumption_kwh) as actual_kwh,
        count(distinct r.meter_id) as meters_reporting
    from {{ ref('stg_meter_readings') }} as r
    inner join members as m on r.meter_id = m.meter_id
    where r.business_date in (select distinct forecast.target_date from forecast)
    group by m.series_kind, m.series, r.interval_start_ts
),

compared as (
    select
        f.series_kind,
        f.series,
        f.target_date,
        f.method,
        f.model_version,
        f.issued_at,
        f.p10_kwh,
        f.p50_kwh,
        f.p90_kwh,
        a.actual_kwh,
        a.meters_reporting,
        f._loaded_at
    from forecast as f
    left join actual as a
        on
            f.series_kind = a.series_kind
            and f.series = a.series
            and f.interval_start = a.interval_start
),

daily as (
    select
        series_kind,
        series,
        target_date as business_date,
        max(method) as method,
        max(model_version) as model_version,
        max(issued_at) as issued_at,
        count(*) as quarter_hours_forecast,
        count(actual_kwh) as quarter_hours_compared,
        max(meters_reporting) as meters_reporting,
        sum(case when actual_kwh is not null then actual_kwh end) as actual_kwh,
        sum(case when actual_kwh is not null then p50_kwh end) as forecast_p50_kwh,
        avg(case when actual_kwh is not null then abs(actual_kwh - p50_kwh) end) as mae_kwh,
        avg(actual_kwh) as mean_actual_kwh,
        avg(
            case
                when actual_kwh is null then null
                when actual_kwh between p10_kwh and p90_kwh then 1.0
                else 0.0
            end
        ) as p10_p90_coverage,
        max(_loaded_at) as _loaded_at
    from compared
    group by series_kind, series, target_date
)

select
    series_kind,
    series,
    business_date,
    method,
    model_version,
    issued_at,
    quarter_hours_forecast,
    quarter_hours_compared,
    meters_reporting,
    actual_kwh,
    forecast_p50_kwh,
    forecast_p50_kwh - actual_kwh as energy_error_kwh,
    mae_kwh,
    mae_kwh / nullif(mean_actual_kwh, 0) as nmae,
    p10_p90_coverage,
    _loaded_at
from daily
where quarter_hours_compared > 0
