# Production image: the official Airflow 3.3 image with the pinned production requirements and
# the production package `metrify` only (the local stack, `metrify_dev`, and the dev/test
# requirements stay out). dbt runs in-process (Cosmos with the dbt runner), so dbt-core and its
# adapters are in the same environment, pinned in requirements.txt.
FROM apache/airflow:3.3.2-python3.11

USER airflow
COPY --chown=airflow:0 requirements.txt /opt/metrify/requirements.txt
RUN pip install --no-cache-dir -r /opt/metrify/requirements.txt

COPY --chown=airflow:0 include/pyproject.toml /opt/metrify/pyproject.toml
COPY --chown=airflow:0 include/metrify /opt/metrify/metrify
RUN pip install --no-cache-dir --no-deps /opt/metrify

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 dbt /opt/airflow/dbt
COPY --chown=airflow:0 airflow_settings.yaml /opt/airflow/airflow_settings.yaml

ENV METRIFY_HOME=/opt/airflow/metrify \
    METRIFY_DBT_DIR=/opt/airflow/dbt

# Cosmos renders the warehouse DAGs from dbt/target/manifest.json and the DAG files never run dbt:
# build it here. `dbt parse` needs the project and its profiles.yml only (no warehouse, no
# network); the host's dbt/target stays out of the build context (.dockerignore).
RUN python -c "from metrify.warehouse.dbt_runner import build_manifest; build_manifest()" \
    && rm -rf "$METRIFY_HOME/logs"
