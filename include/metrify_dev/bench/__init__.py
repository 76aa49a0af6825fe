"""Benchmarks run by `make bench`: ingestion, quality, warehouse, dbt execution modes."""
