-- Every interval the quality gate judged and what became of it: `passed` and `released`
-- intervals are in the facts; `blocked` ones are not, and say why (the failed critical
-- expectations) until an operator releases them (DAG release_quality_interval).
select
    dataset,
    interval_date,
    interval_hour,
    {{ partition_start('interval_date', 'interval_hour') }} as interval_start_utc,
    status,
    case when status = 'blocked' then false else true end as is_in_warehouse,
    judged_rows,
    validated_rows,
    quarantined_rows,
    quality_score,
    failed_expectations,
    judged_at,
    released_by,
    release_reason,
    _loaded_at
from {{ ref('stg_quality_verdicts') }}
