"""Meter ingestion: Kafka micro-batches drained exactly once into partitioned Parquet."""
