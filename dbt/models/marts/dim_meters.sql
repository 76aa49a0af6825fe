-- One row per meter: registry attributes plus the load-profile description.
select
    meter_id,
    load_profile,
    case load_profile
        when 'H25' then 'household'
        when 'P25' then 'household with PV'
        when 'G25' then 'commerce'
        when 'L25' then 'agriculture'
    end as load_profile_description,
    postal_code,
    city,
    region,
    grid_operator,
    latitude,
    longitude,
    installed_date,
    status,
    yearly_kwh,
    pv_kwp,
    case when pv_kwp > 0 then true else false end as has_pv,
    _loaded_at
from {{ ref('stg_meter_registry') }}
