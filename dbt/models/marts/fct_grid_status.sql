-- Hourly grid status per transmission system operator.
select
    operator_name,
    hour_start,
    min(business_date) as business_date,
    max(region) as region,
    count(*) as status_count,
    avg(total_capacity_mw) as avg_total_capacity_mw,
    avg(available_capacity_mw) as avg_available_capacity_mw,
    avg(utilization_rate) as avg_utilization_rate,
    avg(load_factor) as avg_load_factor,
    max(load_factor) as max_load_factor,
    avg(frequency_hz) as avg_frequency_hz,
    min(frequency_hz) as min_frequency_hz,
    max(frequency_hz) as max_frequency_hz,
    max(frequency_deviation_hz) as max_frequency_deviation_hz,
    sum(case when is_frequency_excursion then 1 else 0 end) as frequency_excursions,
    avg(voltage_kv) as avg_voltage_kv,
    avg(grid_stability_score) as avg_stability_score,
    min(grid_stability_score) as min_stability_score,
    avg(renewable_percentage) as avg_renewable_percentage,
    max(_loaded_at) as _loaded_at
from {{ ref('stg_grid_status') }}
group by operator_name, hour_start
