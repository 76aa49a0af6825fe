{#- Which copy of a (meter_id, reading_ts) reading wins if validated/ ever held two: the later in
    Kafka order (producer timestamp), then a fixed order, so a rebuild always picks the same row.
    The quality gate already keeps one reading of record per reading (`metrify.quality.rules`). -#}
{% macro reading_dedup_order() -%}
    kafka_ts desc nulls last, ingested_at desc nulls last, consumption_kwh desc nulls last,
    export_kwh desc nulls last, voltage desc nulls last, frequency desc nulls last
{%- endmacro %}
