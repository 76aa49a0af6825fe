{#- The newest load time already in the incremental model being built (1900-01-01 while it is
    empty): the rows loaded after it are the ones a run has not seen. Only inside is_incremental(). -#}
{% macro loaded_watermark() -%}
    (select coalesce(max(existing._loaded_at), cast('1900-01-01' as timestamp)) from {{ this }} as existing)
{%- endmacro %}
