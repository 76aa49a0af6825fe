{{ config(tags=['forecast']) }}
-- Tomorrow's load per federal state (series_kind 'region') and control area ('control_area'),
-- per quarter-hour of the Europe/Berlin target day: p10/p50/p90 kWh, how it was made (the model
-- or the last-week fallback) and when.
select
    series_kind,
    series,
    target_date,
    interval_start,
    interval_start_local,
    p10_kwh,
    p50_kwh,
    p90_kwh,
    method,
    model_version,
    meters,
    issued_at,
    _loaded_at
from {{ ref('stg_load_forecast') }}
