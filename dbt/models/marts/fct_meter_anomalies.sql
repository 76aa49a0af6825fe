-- Anomaly findings with the meter's attributes and the hour they fall in.
select
    a.meter_id,
    a.reading_ts,
    a.hour_start,
    a.business_date,
    a.anomaly_type,
    a.severity,
    a.score,
    a.detector,
    a.details,
    d.load_profile,
    d.region,
    d.grid_operator,
    a._loaded_at
from {{ ref('stg_meter_anomalies') }} as a
left join {{ ref('dim_meters') }} as d on a.meter_id = d.meter_id
