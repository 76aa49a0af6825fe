"""`metrify`: the command line for running the pipeline locally.

metrify run                      everything end to end on embedded defaults (`make run`)
metrify kafka up|down|status     the embedded Kafka broker
metrify simulate --meters N --start ... --end ... --seed S [fault options]
metrify summary                  what the lake holds
metrify up | down                the local stack with the Airflow UI (`make up`, `make down`)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from metrify.config import Settings, load_settings
from metrify.ingest import kafka
from metrify_dev import kafka_mock


def _say(message: str) -> None:
    print(message, flush=True)


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def simulate_and_produce(settings: Settings, options: Any) -> dict[str, Any]:
    """Simulate, produce into the meter topic, and keep registry, labels and counts beside."""
    from metrify_dev.simulator import produce, simulate

    simulation = simulate(options)
    extra = kafka_mock.embedded_connection_extra(settings)
    meta = kafka.consumer_config(extra, group_id="metrify-simulator")
    before = kafka.watermarks(meta, settings.meter_topic)
    produce(simulation.keys, simulation.values, settings.meter_topic, kafka.producer_config(extra))
    dropped = kafka.dropped_by_retention(before, kafka.watermarks(meta, settings.meter_topic))
    if dropped:
        raise SystemExit(
            f"the embedded broker dropped {dropped:,} of the {len(simulation.values):,} messages just produced: "
            f"librdkafka's mock cluster keeps only about 5 MB per partition. Simulate fewer meters or a "
            f"shorter window per run (drain in between), or point kafka_default at a real cluster."
        )
    out = settings.simulator_dir
    out.mkdir(parents=True, exist_ok=True)
    simulation.registry.to_parquet(out / "meter_registry.parquet", index=False)
    simulation.labels.to_parquet(out / "anomaly_labels.parquet", index=False)
    counts = {**simulation.counts, "topic": settings.meter_topic, "produced_at": datetime.now(UTC).isoformat()}
    (out / "last_run.json").write_text(json.dumps(counts, indent=2, default=str))
    return counts


def _simulation_options(args: argparse.Namespace) -> Any:
    from metrify_dev.simulator import SimulationOptions

    start = _parse_time(args.start) if args.start else SimulationOptions().start
    end = _parse_time(args.end) if args.end else start + timedelta(days=1)
    return SimulationOptions(
        meters=args.meters,
        start=start,
        end=end,
        seed=args.seed,
        anomaly_rate=args.anomaly_rate,
        poison_rate=args.poison_rate,
        late_rate=args.late_rate,
        out_of_order_rate=args.out_of_order_rate,
        duplicate_rate=args.duplicate_rate,
    )


SUMMARY_LAYERS = ("raw", "quarantine", "validated", "anomalies")


def lake_summary(settings: Settings) -> dict[str, Any]:
    """Rows and files per layer and dataset, the meter partitions and the quarantine reasons."""
    from metrify import lake
    from metrify.contracts.readings import DATASET

    root = lake.lake_root(settings)
    datasets: dict[str, dict[str, int]] = {}
    for layer in SUMMARY_LAYERS:
        if not (root / layer).exists():
            continue
        for folder in sorted((root / layer).iterdir(), key=str):
            files = lake.list_files(folder)
            if files:
                datasets[f"{layer}/{folder.name}"] = {"rows": lake.count_rows(folder), "files": len(files)}
    hours = sorted({"/".join(Path(f).parts[-3:-1]) for f in lake.list_files(root / "raw" / DATASET)})
    reasons: Counter[str] = Counter()
    table = lake.read_table(root / "quarantine" / DATASET, columns=["reason"])
    if table is not None:
        reasons.update(r.split(":")[0] for r in table["reason"].to_pylist())
    meters = datasets.get(f"raw/{DATASET}", {"rows": 0})
    quarantined = datasets.get(f"quarantine/{DATASET}", {"rows": 0})
    return {
        "lake": str(root),
        "datasets": datasets,
        "raw_rows": meters["rows"],
        "quarantined_rows": quarantined["rows"],
        "raw_partitions": len(hours),
        "first_partition": hours[0] if hours else None,
        "last_partition": hours[-1] if hours else None,
        "quarantine_reasons": dict(reasons.most_common()),
    }


def run_dag(
    dag_id: str,
    settings: Settings,
    extra_connections: dict[str, dict[str, Any]] | None = None,
    extra_args: tuple[str, ...] = (),
) -> None:
    """Run one DAG locally, printing progress while it works; exits with its log tail on failure."""
    from metrify_dev.airflow_env import dags_test

    log_path = settings.home / "logs" / f"{dag_id}.log"
    started = time.monotonic()
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(5):
            _say(f"      ... {dag_id} running for {time.monotonic() - started:.0f} s (log: {log_path})")

    threading.Thread(target=ticker, daemon=True).start()
    try:
        ok = dags_test(dag_id, log_path, settings, extra_connections, extra_args)
    finally:
        stop.set()
    if not ok:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"DAG {dag_id} failed; last lines of {log_path}:\n{tail}")
    _say(f"      {dag_id} succeeded in {time.monotonic() - started:.0f} s (log: {log_path})")


#: how long before the window's end `metrify run` polls the weather forecast (see `run_api_dags`)
FORECAST_POLL_LEAD = timedelta(hours=6)


def run_api_dags(settings: Settings, options: Any) -> None:
    """Poll the grid and weather APIs for the simulated window, against the embedded fake APIs."""
    from metrify_dev.fakes import start_fakes

    window_end = min(options.end, datetime.now(UTC).replace(second=0, microsecond=0))
    conf = json.dumps({"window_start": options.start.isoformat(), "window_end": window_end.isoformat()})
    with start_fakes(seed=options.seed, anchor=options.start) as fakes:
        for dag_id in ("ingest_grid_status", "ingest_weather"):
            _say(
                f"      running DAG {dag_id} for {options.start:%Y-%m-%d %H:%M}..{window_end:%Y-%m-%d %H:%M} UTC "
                "against the embedded fake APIs"
            )
            run_dag(dag_id, settings, extra_connections=fakes.connections, extra_args=("-c", conf))
    # Poll the weather forecast FORECAST_POLL_LEAD before the window's end, as the scheduled run then
    # would: the newest MOSMIX run covers the rest of the window's day and all of the next local
    # day, which the load forecast predicts (its model needs the target day's temperature without
    # a gap; observations stop where the target day starts, at local midnight, and the forecast
    # starts at the fakes' clock: polled at the window's end, the first hour was missing). The hours
    # after the fakes' clock are forecasts, not observations.
    poll_at = window_end - FORECAST_POLL_LEAD
    as_of = json.dumps({"as_of": poll_at.isoformat()})
    with start_fakes(seed=options.seed, anchor=options.start, now=lambda: poll_at) as fakes:
        _say(f"      running DAG ingest_weather_forecast as of {poll_at:%Y-%m-%d %H:%M} UTC (tomorrow's weather)")
        run_dag("ingest_weather_forecast", settings, extra_connections=fakes.connections, extra_args=("-c", as_of))


def run_warehouse(settings: Settings, options: Any) -> None:
    """Seed the meter registry, run `transform` and `warehouse_daily`, reconcile with the lake."""
    import pandas as pd

    from metrify.warehouse.business_calendar import daily_run_logical_date
    from metrify.warehouse.dbt_runner import build_manifest
    from metrify.warehouse.duckdb_loader import duckdb_session, summary
    from metrify.warehouse.reconcile import reconcile
    from metrify.warehouse.unregistered import count_unregistered
    from metrify_dev.postgres import seed_registry

    if not settings.dbt_manifest.exists():
        build_manifest(settings)
    seed_registry(pd.read_parquet(settings.simulator_dir / "meter_registry.parquet"), settings)
    run_dag("transform", settings)
    # the daily run due the next morning rebuilds the simulated (business) day
    run_dag("warehouse_daily", settings, extra_args=(daily_run_logical_date(options.start.date()),))
    tables = summary(settings)
    for layer in ("staging", "marts", "metrics"):
        built = {name.split(".", 1)[1]: rows for name, rows in tables.items() if name.startswith(f"{layer}.")}
        _say(f"      {layer + ':':<9} " + ", ".join(f"{name} {rows:,}" for name, rows in built.items()))
    with duckdb_session(None, settings) as db:
        unknown = count_unregistered(db)
    _say(
        f"      meters not in the registry: {unknown.meters:,} ({unknown.readings:,} readings kept, dim_meters "
        f"status 'unregistered'; each alerted once to {settings.alert_log or 'the alert channels'})"
        if unknown.meters
        else "      meters not in the registry: none"
    )
    problems = reconcile(settings)
    _say(f"      facts vs lake (count and kWh per hour): {'OK' if not problems else f'{len(problems)} MISMATCHES'}")
    if problems:
        raise SystemExit(f"warehouse reconciliation failed: {problems[:3]}")


def run_forecast(settings: Settings, options: Any) -> None:
    """Seed the weeks of history the forecast model needs (after the warehouse reconciled the
    window, so its checks see the window only), run `forecast_load` for the window's last day
    (so `forecast_accuracy_daily` has actuals) and for the day after, then show what the
    warehouse holds for that day and where its plot is."""
    import pandas as pd

    from metrify import lake
    from metrify.forecast.tasks import plot_path, run_logical_date
    from metrify_dev.history import HISTORY_DAYS, seed_history

    started = time.monotonic()
    root = lake.lake_root(settings)
    _say(f"      seeding {HISTORY_DAYS} days of history (simulated, written directly to the validated layer)")
    fleet = pd.read_parquet(settings.simulator_dir / "meter_registry.parquet")
    seeded = seed_history(root, options, fleet=fleet)
    _say(
        f"      {seeded.readings:,} readings ({seeded.reading_files} hours) and {seeded.weather_rows:,} DWD "
        f"observations, {seeded.start:%Y-%m-%d %H:%M} to {seeded.end:%Y-%m-%d %H:%M} UTC, same {len(fleet)} meters "
        f"and seed, in {time.monotonic() - started:.0f} s"
    )
    window_end = options.end or options.start + timedelta(days=1)
    last_day = (window_end - timedelta(microseconds=1)).date()
    tomorrow = last_day + timedelta(days=1)
    for day in (last_day, tomorrow):
        logical = run_logical_date(day)
        _say(f"      running DAG forecast_load for {day} (the run of {logical})")
        run_dag("forecast_load", settings, extra_args=(logical,))
    rows, accuracy = forecast_in_warehouse(settings, tomorrow, last_day)
    if rows.empty:
        raise SystemExit(f"no forecast for {tomorrow} in marts.fct_load_forecast: see the forecast_load log")
    for kind, part in rows.groupby("series_kind", sort=False):
        _say(f"      fct_load_forecast for {tomorrow}, {kind}:")
        for row in part.itertuples(index=False):
            _say(
                f"        {row.series:<24} {row.quarter_hours:>4} quarter-hours  {row.method:<20} "
                f"p50 {row.p50_kwh:>10,.1f} kWh"
            )
    for row in accuracy.itertuples(index=False):
        _say(
            f"      forecast_accuracy_daily {last_day} {row.series:<24} nMAE {row.nmae:.3f}, p10-p90 coverage "
            f"{row.p10_p90_coverage:.0%} over {row.quarter_hours_compared} quarter-hours ({row.method})"
        )
    _say(f"      forecast plot (forecast vs actual per region): {plot_path(root, tomorrow)}")
    _say(f"      forecast step took {time.monotonic() - started:.0f} s")


def forecast_in_warehouse(settings: Settings, day: Any, accuracy_day: Any) -> tuple[Any, Any]:
    """(rows, method and p50 energy per series of `day` in `marts.fct_load_forecast`; the
    regions' `metrics.forecast_accuracy_daily` rows of `accuracy_day`) from the DuckDB warehouse."""
    from metrify.warehouse.duckdb_loader import duckdb_session

    with duckdb_session(None, settings) as db:
        rows = db.execute(
            "SELECT series_kind, series, count(*) AS quarter_hours, string_agg(DISTINCT method, ',') AS method, "
            "sum(p50_kwh) AS p50_kwh FROM marts.fct_load_forecast WHERE target_date = ? "
            "GROUP BY series_kind, series ORDER BY series_kind DESC, series",
            [day],
        ).df()
        accuracy = db.execute(
            "SELECT series, nmae, p10_p90_coverage, quarter_hours_compared, method "
            "FROM metrics.forecast_accuracy_daily WHERE business_date = ? AND series_kind = 'region' ORDER BY series",
            [accuracy_day],
        ).df()
    return rows, accuracy


def cmd_run_production(args: argparse.Namespace) -> None:
    """`metrify run --profile production`: see `metrify_dev.production`."""
    from metrify_dev import production

    home = Path(args.home) if args.home else load_settings().home / "production"
    if home.exists() and not args.keep:
        shutil.rmtree(home)  # a fresh broker, bucket, metadata DB and warehouse every run
    start = _parse_time(args.start) if args.start else None
    options = production.Options(
        meters=args.meters,
        start=start,
        hours=args.hours,
        seed=args.seed,
        partitions=args.partitions,
        timeout=args.timeout,
        backfill=True,
    )
    result = production.run(home, options)
    _say(json.dumps(result, indent=2, default=str))
    if not production.reconciled(result):
        raise SystemExit("the production-shaped run did not reconcile: see the lines above")


def cmd_run(args: argparse.Namespace) -> None:
    from metrify_dev.airflow_env import ensure_db

    if args.profile == "production":
        cmd_run_production(args)
        return
    settings = load_settings()
    begun = time.monotonic()
    _say("[1/8] embedded Kafka broker")
    fresh = kafka_mock.read_broker(settings) is None
    info = kafka_mock.up(settings)
    _say(f"      listening on {info['bootstrap']} (pid {info['pid']}; stop with `metrify kafka down`)")
    lake_dir = settings.home / "lake"
    if fresh and settings.lake_url == lake_dir.as_uri() and lake_dir.exists():
        # A new embedded broker starts its offsets at 0 again; the old embedded lake would collide.
        _say(f"      new broker: clearing the embedded lake {lake_dir} of the previous broker's data")
        shutil.rmtree(lake_dir)
    before = lake_summary(settings)

    options = _simulation_options(args)
    _say(
        f"[2/8] simulating {options.meters} meters, {options.start:%Y-%m-%d %H:%M} to "
        f"{options.end:%Y-%m-%d %H:%M} UTC (seed {options.seed}) into topic {settings.meter_topic!r}"
    )
    too_old = datetime.now(UTC) - settings.late_lookback
    if options.start < too_old:
        _say(
            f"      note: readings before {too_old:%Y-%m-%d %H:%M} UTC are older than METRIFY_LATE_LOOKBACK_DAYS="
            f"{settings.late_lookback_days} and will be quarantined as too late; raise it to ingest them"
        )
    counts = simulate_and_produce(settings, options)
    _say(
        f"      produced {counts['messages']:,} messages: {counts['readings']:,} readings, "
        f"{counts['poison_messages']} poison, {counts['exact_duplicates']} duplicates, {counts['late']} late, "
        f"{counts['anomaly_labels']} labelled anomalous readings"
    )

    _say("[3/8] Airflow metadata database (SQLite, first run ~30 s)")
    ensure_db(settings)

    _say("[4/8] running DAG ingest_meter_readings")
    run_dag("ingest_meter_readings", settings)
    run_api_dags(settings, options)

    _say("[5/8] quality gates and anomaly detection")
    blocked = []
    for dag_id in ("quality_meter_readings", "quality_sources"):
        try:
            run_dag(dag_id, settings)
        except SystemExit:  # a blocked interval is a finding to show, not a crash; the log tail was printed
            blocked.append(dag_id)
    from metrify.quality.summary import lake_quality_summary

    quality = lake_quality_summary(settings)
    _say(
        f"      validated/meter_readings/   {quality['validated_rows']:>10,} rows; gate quarantine "
        f"{quality['gate_quarantined_rows']:,} rows {quality['gate_quarantine_reasons']}"
    )
    _say(f"      blocked hours: {', '.join(quality['intervals_blocked']) or 'none'}")
    _say(f"      anomalies/meter_readings/   {quality['anomalies']}")
    _say(f"      meter-day quality tiers:    {quality['meter_day_tiers']}")
    _say(f"      Great Expectations Data Docs: {quality['data_docs']}")

    _say("[6/8] warehouse: dbt models rendered by Cosmos (DuckDB at .metrify/warehouse.duckdb)")
    run_warehouse(settings, options)

    _say("[7/8] day-ahead load forecast (DAG forecast_load) into the warehouse")
    run_forecast(settings, options)

    _say("[8/8] summary")
    after = lake_summary(settings)
    landed = (after["raw_rows"] - before["raw_rows"]) + (after["quarantined_rows"] - before["quarantined_rows"])
    ok = landed == counts["messages"]
    print_summary(after)
    _say(
        f"  reconciliation: {counts['messages']:,} messages produced = "
        f"{after['raw_rows'] - before['raw_rows']:,} raw rows + "
        f"{after['quarantined_rows'] - before['quarantined_rows']:,} quarantined  ->  {'OK' if ok else 'MISMATCH'}"
    )
    _say(
        f"  done in {time.monotonic() - begun:.0f} s. Kafka and the registry PostgreSQL keep running for the "
        "next run; `make down` stops them."
    )
    if not ok:
        raise SystemExit("reconciliation failed: see the DAG log above and RUNBOOK.md")
    if blocked:
        raise SystemExit(
            f"quality gate blocked data in {', '.join(blocked)}: see the log tails above "
            "and docs/quality.md (How to read a quality failure)"
        )


def print_summary(summary: dict[str, Any]) -> None:
    _say(f"  lake: {summary['lake']}")
    for name, counts in summary["datasets"].items():
        _say(f"    {name + '/':<32} {counts['rows']:>10,} rows in {counts['files']:>4} files")
    if summary["raw_partitions"]:
        _say(
            f"    meter readings span {summary['raw_partitions']} hour partitions "
            f"({summary['first_partition']} .. {summary['last_partition']})"
        )
    if summary["quarantine_reasons"]:
        _say("    meter readings quarantined, by reason:")
    for reason, count in summary["quarantine_reasons"].items():
        _say(f"        {count:>6} x {reason}")


def cmd_simulate(args: argparse.Namespace) -> None:
    settings = load_settings()
    kafka_mock.up(settings)
    counts = simulate_and_produce(settings, _simulation_options(args))
    print(json.dumps(counts, indent=2, default=str))


def cmd_kafka(args: argparse.Namespace) -> None:
    settings = load_settings()
    if args.action == "up":
        info = kafka_mock.up(settings)
        _say(
            f"embedded Kafka broker on {info['bootstrap']} (pid {info['pid']}); "
            f"address published in {kafka_mock.broker_file(settings)}"
        )
    elif args.action == "down":
        _say("stopped" if kafka_mock.down(settings) else "no embedded broker was running")
    elif args.action == "serve":
        kafka_mock.serve(settings)
    else:
        running = kafka_mock.read_broker(settings)
        _say(json.dumps(running) if running else "not running")
        if not running:
            sys.exit(1)


def cmd_up(args: argparse.Namespace) -> None:
    from metrify_dev import stack

    _say(
        "starting Kafka, the simulator feed and Airflow (API server, scheduler, DAG processor, "
        "triggerer); first start ~1-2 min ..."
    )
    info = stack.up(meters=args.meters)
    users = ", ".join(info["passwords"])
    _say(f"Airflow UI: {info['url']}  (users: {users}; passwords in {info['passwords_file']})")
    _say(f"Kafka: {info['kafka']}; logs in {load_settings().home / 'stack'}; stop everything with `make down`")


def cmd_down(_: argparse.Namespace) -> None:
    from metrify_dev import stack

    stopped = stack.down()
    _say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def cmd_summary(_: argparse.Namespace) -> None:
    print_summary(lake_summary(load_settings()))


def _add_simulation_args(parser: argparse.ArgumentParser, meters: int, faults: bool) -> None:
    parser.add_argument("--meters", type=int, default=meters)
    parser.add_argument("--start", help="UTC start, ISO-8601 (default: yesterday 00:00 UTC)")
    parser.add_argument("--end", help="UTC end, exclusive (default: start + 1 day)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--anomaly-rate", type=float, default=0.05 if faults else 0.0)
    parser.add_argument("--poison-rate", type=float, default=0.001 if faults else 0.0)
    parser.add_argument("--late-rate", type=float, default=0.01 if faults else 0.0)
    parser.add_argument("--out-of-order-rate", type=float, default=0.01 if faults else 0.0)
    parser.add_argument("--duplicate-rate", type=float, default=0.002 if faults else 0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="metrify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline end to end on embedded defaults")
    _add_simulation_args(run, meters=500, faults=True)
    run.add_argument(
        "--profile",
        choices=["embedded", "production"],
        default="embedded",
        help="production: PostgreSQL metadata, separate Airflow processes, a real Kafka broker, S3 and Snowflake "
        "stand-ins (see README, 'Production-shaped run on one machine')",
    )
    run.add_argument("--hours", type=int, default=24, help="production profile: hours of readings simulated")
    run.add_argument("--partitions", type=int, default=12, help="production profile: partitions of the meter topic")
    run.add_argument("--home", help="production profile: state folder (default .metrify/production, cleared)")
    run.add_argument("--keep", action="store_true", help="production profile: keep the state folder's contents")
    run.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="production profile: seconds the pipeline may take to settle after the readings are produced",
    )
    run.set_defaults(func=cmd_run)
    sim = sub.add_parser("simulate", help="produce simulated meter readings into the meter topic")
    _add_simulation_args(sim, meters=100, faults=False)
    sim.set_defaults(func=cmd_simulate)
    kafka_parser = sub.add_parser("kafka", help="the embedded Kafka broker")
    kafka_parser.add_argument("action", choices=["up", "down", "status", "serve"])
    kafka_parser.set_defaults(func=cmd_kafka)
    sub.add_parser("summary", help="what the lake holds").set_defaults(func=cmd_summary)
    up = sub.add_parser("up", help="start the local stack with the Airflow UI")
    up.add_argument("--meters", type=int, default=200, help="meters the continuous feed simulates")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=cmd_down)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
