-- The business calendar: quarter-hours per local day from the macro, on the day the clocks go
-- forward (92), the day they go back (100) and an ordinary day (96), as the Python calendar
-- (metrify.contracts.calendar) says. Returns the days where the macro disagrees.
with expected (business_date, quarter_hours) as (
    select * from (
        values
        (date '2026-03-29', 92),
        (date '2026-10-25', 100),
        (date '2026-06-15', 96)
    )
)

select
    business_date,
    quarter_hours,
    {{ quarter_hours_in_local_day('business_date') }} as macro_quarter_hours
from expected
where {{ quarter_hours_in_local_day('business_date') }} <> quarter_hours
