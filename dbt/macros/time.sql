{#- Cross-database time helpers (DuckDB and Snowflake). Timestamps are naive UTC. -#}

{% macro to_local(column) -%}
    {{ return(adapter.dispatch('to_local', 'metrify')(column)) }}
{%- endmacro %}

{% macro default__to_local(column) -%}
    convert_timezone('UTC', '{{ var("business_timezone") }}', {{ column }})
{%- endmacro %}

{% macro duckdb__to_local(column) -%}
    timezone('{{ var("business_timezone") }}', timezone('UTC', {{ column }}))
{%- endmacro %}

{% macro iso_day_of_week(column) -%}
    {{ return(adapter.dispatch('iso_day_of_week', 'metrify')(column)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(column) -%}dayofweekiso({{ column }}){%- endmacro %}

{% macro duckdb__iso_day_of_week(column) -%}isodow({{ column }}){%- endmacro %}

{#- The start of the 15-minute interval a reading closes (reading_ts is the interval's end). -#}
{% macro interval_start(column) -%}
    {{ dbt.dateadd('minute', -15, column) }}
{%- endmacro %}

{#- The UTC hour a reading belongs to: the hour its interval starts in. -#}
{% macro reading_hour(column) -%}
    date_trunc('hour', {{ metrify.interval_start(column) }})
{%- endmacro %}

{#- The first hour an incremental run recomputes whatever was loaded: `lookback_hours` before `hour`. -#}
{% macro lookback_start(hour) -%}
    {{ dbt.dateadd('hour', -var('lookback_hours'), hour) }}
{%- endmacro %}

{#- Whole seconds from one timestamp to a later one. -#}
{% macro seconds_between(from_ts, to_ts) -%}
    {{ dbt.datediff(from_ts, to_ts, 'second') }}
{%- endmacro %}

{#- The UTC start of a lake interval: its date, plus its hour for hourly intervals. -#}
{% macro partition_start(date_column, hour_column) -%}
    {{ dbt.dateadd('hour', 'coalesce(' ~ hour_column ~ ', 0)', 'cast(' ~ date_column ~ ' as timestamp)') }}
{%- endmacro %}

{#- The UTC instant of a wall-clock time in the business time zone (a local midnight never falls
    in a clock change). -#}
{% macro from_local(column) -%}
    {{ return(adapter.dispatch('from_local', 'metrify')(column)) }}
{%- endmacro %}

{% macro default__from_local(column) -%}
    convert_timezone('{{ var("business_timezone") }}', 'UTC', {{ column }})
{%- endmacro %}

{% macro duckdb__from_local(column) -%}
    timezone('UTC', timezone('{{ var("business_timezone") }}', {{ column }}))
{%- endmacro %}

{#- Quarter-hours in the business day `day` (a date): from its local midnight to the next, in UTC.
    96, or 92 / 100 on the days the clocks go forward / back, known in advance. The same calendar as
    the Python side's `quarter_hours_in_local_day` (metrify.contracts.calendar; a test keeps them
    in agreement). -#}
{% macro quarter_hours_in_local_day(day) -%}
    {%- set midnight = 'cast(' ~ day ~ ' as timestamp)' -%}
    cast(
        {{ dbt.datediff(metrify.from_local(midnight), metrify.from_local(dbt.dateadd('day', 1, midnight)), 'minute') }}
        / 15 as integer
    )
{%- endmacro %}
