-- One row per meter: every meter of the operational registry with its attributes and the
-- load-profile description, plus every meter seen in the readings that the registry does not know
-- (yet), as status `unregistered` with null attributes. The facts join by meter_id, so their
-- relationships hold while the registry lags, and a meter gets its registry attributes here on the
-- first run after the registry caught up.
with registry as (
    select * from {{ ref('stg_meter_registry') }}
),

seen as (
    select * from {{ ref('stg_meters_seen') }}
)

select
    coalesce(r.meter_id, s.meter_id) as meter_id,
    r.load_profile,
    case
        when r.meter_id is null then 'unknown (not in the registry)'
        when r.load_profile = 'H25' then 'household'
        when r.load_profile = 'P25' then 'household with PV'
        when r.load_profile = 'G25' then 'commerce'
        when r.load_profile = 'L25' then 'agriculture'
        when r.load_profile = 'WP' then 'heat pump or electric heating'
    end as load_profile_description,
    r.postal_code,
    r.city,
    r.region,
    r.grid_operator,
    r.latitude,
    r.longitude,
    r.installed_date,
    case when r.meter_id is null then 'unregistered' else r.status end as status,
    r.yearly_kwh,
    r.pv_kwp,
    case when r.pv_kwp > 0 then true when r.meter_id is not null then false end as has_pv,
    case when r.meter_id is not null then true else false end as is_registered,
    s.first_seen_at,
    s.registry_caught_up_at,
    coalesce(r._loaded_at, s._loaded_at) as _loaded_at
from registry as r
full outer join seen as s on r.meter_id = s.meter_id
