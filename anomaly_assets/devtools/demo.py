"""End to end on the embedded defaults: local broker, generated events, every asset materialised.

Runs go into the Dagster instance at $DAGSTER_HOME, so ``make dev`` shows them afterwards.
"""

import argparse
import time

from anomaly_assets import settings
from anomaly_assets.devtools.broker import LocalKafkaBroker
from anomaly_assets.devtools.generator import EventGenerator, produce


def _topic_size(bootstrap: str, topic: str) -> int:
    from anomaly_assets.lib.offsets import KafkaUnavailable, fetch_offsets

    try:
        _, ends = fetch_offsets({"bootstrap.servers": bootstrap}, topic, 5.0)
    except KafkaUnavailable:
        return 0
    return sum(ends.values())


def _table_summary(root: str, names: list[str]) -> list[str]:
    from deltalake import DeltaTable

    lines = []
    for name in names:
        path = f"{root.rstrip('/')}/{name}"
        try:
            table = DeltaTable(path)
        except Exception:  # noqa: BLE001 - a table an asset has not written yet
            lines.append(f"  {name:<26} (not written) {path}")
            continue
        rows = table.to_pyarrow_dataset().count_rows()
        lines.append(f"  {name:<26} {rows:>9,} rows  v{table.version():<4} {path}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--anomaly-rate", type=float, default=0.01)
    parser.add_argument("--malformed-rate", type=float, default=0.005)
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="default: the topic's current size, so each demo adds new events",
    )
    args = parser.parse_args(argv)

    from dagster import DagsterInstance

    from anomaly_assets.definitions import defs

    broker = LocalKafkaBroker(port=args.port).start()
    topic = settings.KAFKA_TOPIC
    print(f"Kafka broker at {broker.bootstrap_servers} (data in {broker.data_dir})")
    seed = (
        args.seed
        if args.seed is not None
        else _topic_size(broker.bootstrap_servers, topic)
    )
    labels = settings.LOCAL_DIR / "labels.csv"
    report = produce(
        broker.bootstrap_servers,
        topic,
        args.events,
        EventGenerator(
            seed=seed,
            anomaly_rate=args.anomaly_rate,
            malformed_rate=args.malformed_rate,
        ),
        labels_path=labels,
    )
    print(
        f"Produced {report.delivered:,} events to {topic} ({report.rate:,.0f}/s), "
        f"{report.labelled:,} labelled in {labels}"
    )

    instance = DagsterInstance.get()
    job = defs.resolve_implicit_global_asset_job_def()
    t0 = time.monotonic()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    print(
        f"Materialised {len(job.asset_layer.executable_asset_keys)} assets in "
        f"{time.monotonic() - t0:.0f}s: {'success' if result.success else 'FAILED'} "
        f"(run {result.run_id})"
    )
    tables = sorted(
        spec.key.to_user_string()
        for spec in defs.resolve_all_asset_specs()
        if "delta" in spec.kinds  # the model lives in MLflow, not in a table
    )
    print("Delta tables (read back with the deltalake package):")
    print("\n".join(_table_summary(settings.LAKEHOUSE_ROOT, tables)))
    from anomaly_assets.resources.mlflow import MlflowResource

    mlflow_settings = MlflowResource()
    champion = mlflow_settings.champion_version()
    print(
        f"MLflow {mlflow_settings.tracking_uri}: model "
        f"{mlflow_settings.registered_model_name} champion "
        f"v{champion.version if champion else 'none'} (experiment anomaly_model), "
        "evaluations in experiment ai_enrichment_eval; browse with "
        f"`.venv/bin/mlflow ui --backend-store-uri {mlflow_settings.tracking_uri}`"
    )
    print(
        f"Dagster runs and metadata: DAGSTER_HOME={instance.root_directory}; "
        "open the UI with `make dev` (http://127.0.0.1:3000)."
    )
    print("Stop the broker with `make broker-stop`.")
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
