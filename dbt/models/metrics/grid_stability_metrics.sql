-- Daily grid stability per transmission system operator.
select
    business_date,
    operator_name,
    count(*) as hours_reported,
    sum(status_count) as status_count,
    avg(avg_stability_score) as avg_stability_score,
    min(min_stability_score) as min_stability_score,
    avg(avg_load_factor) as avg_load_factor,
    max(max_load_factor) as max_load_factor,
    avg(avg_frequency_hz) as avg_frequency_hz,
    max(max_frequency_deviation_hz) as max_frequency_deviation_hz,
    sum(frequency_excursions) as frequency_excursions,
    avg(avg_renewable_percentage) as avg_renewable_percentage,
    avg(avg_utilization_rate) as avg_utilization_rate
from {{ ref('fct_grid_status') }}
group by business_date, operator_name
