"""The warehouse: lake intervals loaded into DuckDB or Snowflake, the registry, dbt via Cosmos."""
