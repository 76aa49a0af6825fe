-- A quarter-hour is measured or substituted, never both: per meter-hour, measured readings plus
-- substituted quarter-hours never exceed the hour's four quarter-hours, and an hour with
-- substitutes names their methods. Returns the meter-hours that break this.
select
    meter_id,
    hour_start,
    reading_count,
    substituted_quarter_hours,
    substitution_methods
from {{ ref('fct_meter_readings_hourly') }}
where
    reading_count + substituted_quarter_hours > 4
    or (substituted_quarter_hours > 0 and substitution_methods is null)
    or (substituted_quarter_hours = 0 and substitution_methods is not null)
