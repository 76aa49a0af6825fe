{#- Which copy of a (meter_id, reading_ts) reading wins: the latest ingested, then a fixed order,
    so a rebuild always picks the same row. Used by staging and the reconciliation test. -#}
{% macro reading_dedup_order() -%}
    ingested_at desc nulls last, kafka_ts desc nulls last, consumption_kwh desc nulls last,
    export_kwh desc nulls last, voltage desc nulls last, frequency desc nulls last
{%- endmacro %}
