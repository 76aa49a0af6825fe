"""Metrify: a smart-meter data platform on Apache Airflow."""
