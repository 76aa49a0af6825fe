{#- The values of `column` in a group, sorted and comma-separated (string_agg on DuckDB, listagg
    on Snowflake): feed it distinct rows for a list without repeats. -#}
{% macro sorted_list(column) -%}
    {{ return(adapter.dispatch('sorted_list', 'metrify')(column)) }}
{%- endmacro %}

{% macro default__sorted_list(column) -%}
    listagg({{ column }}, ',') within group (order by {{ column }})
{%- endmacro %}

{% macro duckdb__sorted_list(column) -%}
    string_agg({{ column }}, ',' order by {{ column }})
{%- endmacro %}
