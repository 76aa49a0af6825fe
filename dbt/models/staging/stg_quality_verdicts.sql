-- The quality gate's verdicts, one row per judged interval (meter readings per UTC hour, grid
-- status and weather per UTC day).
select
    cast(dataset as varchar(32)) as dataset,
    interval_date,
    interval_hour,
    lower(status) as status,
    judged_rows,
    validated_rows,
    quarantined_rows,
    quality_score,
    failed_expectations,
    judged_at,
    released_by,
    release_reason,
    _loaded_at
from {{ source('lake', 'quality_verdicts') }}
