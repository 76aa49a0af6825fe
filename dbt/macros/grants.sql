{#- Read-only access for the reporting role on marts and metrics: Snowflake only (a no-op on
    DuckDB, which has no roles). The role also needs USAGE on the database and schemas, granted
    once by the platform admin (see docs/warehouse.md). -#}
{% macro metrify_grant_reporting() -%}
    {%- set role = var('reporting_role', '') -%}
    {%- if target.type == 'snowflake' and role -%}
        grant select on {{ this }} to role {{ role }}
    {%- endif -%}
{%- endmacro %}
