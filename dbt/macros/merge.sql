{#- MERGE for the incremental facts on Snowflake, with the INSERT values qualified by the source
    alias (DBT_INTERNAL_SOURCE.col). Snowflake reads unqualified and qualified values the same
    way; the fakesnow endpoint used in the tests only resolves the qualified form. Incremental
    predicates are honoured as in dbt's default merge. -#}
{% macro snowflake__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
    {%- set columns = dest_columns | map(attribute='name') | list -%}
    {%- set keys = ([unique_key] if unique_key is string else unique_key) if unique_key is not none else [] -%}
    {%- set predicates = (incremental_predicates or []) | list -%}
    {%- for key in keys -%}
        {%- do predicates.append('DBT_INTERNAL_SOURCE.' ~ key ~ ' = DBT_INTERNAL_DEST.' ~ key) -%}
    {%- endfor -%}
    {%- set sql_header = config.get('sql_header', none) -%}
    {{ sql_header if sql_header is not none }}
    {%- if keys | length == 0 %}
    insert into {{ target }} ({{ get_quoted_csv(columns) }})
    select {{ get_quoted_csv(columns) }} from {{ source }}
    {%- else %}
    merge into {{ target }} as DBT_INTERNAL_DEST
    using {{ source }} as DBT_INTERNAL_SOURCE
    on {{ predicates | join(' and ') }}
    when matched then update set
        {% for column in columns -%}
        {{ adapter.quote(column) }} = DBT_INTERNAL_SOURCE.{{ adapter.quote(column) }}{{ ',' if not loop.last }}
        {% endfor %}
    when not matched then insert ({{ get_quoted_csv(columns) }})
    values (
        {% for column in columns -%}
        DBT_INTERNAL_SOURCE.{{ adapter.quote(column) }}{{ ',' if not loop.last }}
        {% endfor %}
    )
    {%- endif %}
{%- endmacro %}
