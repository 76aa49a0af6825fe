-- The meter registry as copied from the operational PostgreSQL database.
select
    cast(meter_id as varchar(64)) as meter_id,
    cast(load_profile as varchar(8)) as load_profile,
    cast(postal_code as varchar(5)) as postal_code,
    city,
    region,
    grid_operator,
    latitude,
    longitude,
    installed_date,
    lower(status) as status,
    yearly_kwh,
    coalesce(pv_kwp, 0) as pv_kwp,
    _loaded_at
from {{ source('lake', 'meter_registry') }}
