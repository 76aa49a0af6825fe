{{ config(tags=['forecast']) }}
-- The day-ahead load forecast as landed by `forecast_load`: one row per series, quarter-hour and
-- target day. Reloading a target day replaces its rows (the loader's interval is the day), so
-- a day holds the forecast of its latest run.
select
    cast(series_kind as varchar(16)) as series_kind,
    cast(series as varchar(64)) as series,
    target_date,
    interval_start,
    {{ to_local('interval_start') }} as interval_start_local,
    p10_kwh,
    p50_kwh,
    p90_kwh,
    cast(method as varchar(32)) as method,
    cast(model_version as varchar(64)) as model_version,
    meters,
    issued_at,
    _loaded_at
from {{ source('lake', 'load_forecast') }}
