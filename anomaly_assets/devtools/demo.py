"""End to end on the embedded defaults: local broker, generated events, every asset materialised.

Runs go into the Dagster instance at $DAGSTER_HOME, so ``make dev`` shows them afterwards.
"""

import argparse
import threading
import time
import uuid
from pathlib import Path
from typing import Self

from dagster import DagsterEventType

from anomaly_assets import settings
from anomaly_assets.devtools.broker import LocalKafkaBroker
from anomaly_assets.devtools.console import ConsoleToLog
from anomaly_assets.devtools.generator import EventGenerator, continuing_start, produce

#: The same users in every demo, as anomaly-generate's default: their history carries over.
POPULATION_SEED = 42


def _topic_size(bootstrap: str, topic: str) -> int:
    from anomaly_assets.ingestion.offsets import KafkaUnavailable, fetch_offsets

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


class Progress:
    """Follows a run in the instance's event log from a thread: a line when an asset step
    starts, one when it ends (seconds, rows each of its tables got) and one per check,
    with the whole event stream in a log file, so the terminal shows progress instead of
    Dagster's DEBUG events."""

    def __init__(
        self, instance, log_path: Path, asset_steps: set[str], poll_s: float = 0.5
    ) -> None:
        self.instance, self.log_path, self.poll_s = instance, log_path, poll_s
        self.asset_steps = asset_steps
        self.run_id = str(uuid.uuid4())
        self.started: dict[str, float] = {}
        self.rows: dict[str, dict[str, int]] = {}
        self.seconds: dict[str, float] = {}
        self.failed: list[str] = []
        self.checks = {"passed": 0, "failed": 0}
        self._cursor: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> Self:
        self._output = ConsoleToLog(self.log_path).__enter__()
        self._log = self._output.log
        try:
            self._thread.start()
        except BaseException:
            self._output.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._done.set()
            self._thread.join()
            self._drain()
        finally:
            self._output.__exit__(*exc)

    def _say(self, line: str) -> None:
        self._output.say(line)

    def _follow(self) -> None:
        while not self._done.wait(self.poll_s):
            self._drain()

    def _drain(self) -> None:
        """Handle the records written since the last call (the instance's own cursor)."""
        while True:
            page = self.instance.get_records_for_run(
                self.run_id, cursor=self._cursor, limit=500
            )
            for entry in page.records:
                self._handle(entry.event_log_entry)
            self._cursor = page.cursor
            if not page.has_more:
                break
        self._log.flush()

    def _handle(self, record) -> None:
        event = record.dagster_event
        kind = event.event_type_value if event else "LOG"
        self._log.write(f"{kind} {record.step_key or ''} {record.message}\n")
        error = getattr(event and event.event_specific_data, "error", None)
        if error is not None:
            self._log.write(error.to_string() + "\n")
        if event is not None:
            self._show(event, record.timestamp)

    def _show(self, event, at: float) -> None:
        step, kind = event.step_key, event.event_type
        if kind == DagsterEventType.STEP_START:
            self.started[step] = at
            if step in self.asset_steps:
                self._say(f"  {step:<27} started")
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            done = event.step_materialization_data.materialization
            rows = done.metadata.get("rows_written")
            if rows is not None:
                key = done.asset_key.to_user_string()
                self.rows.setdefault(step, {})[key] = rows.value
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            state = "passed" if check.passed else "FAILED"
            self.checks["passed" if check.passed else "failed"] += 1
            self._say(f"    check {check.check_name:<35} {state}")
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            self.seconds[step] = at - self.started.get(step, at)
            if kind == DagsterEventType.STEP_FAILURE:
                self.failed.append(step)
            if step in self.asset_steps or kind == DagsterEventType.STEP_FAILURE:
                state = "done" if kind == DagsterEventType.STEP_SUCCESS else "FAILED"
                rows = ", ".join(
                    f"{key} {n:,} rows" for key, n in self.rows.get(step, {}).items()
                )
                self._say(
                    f"  {step:<27} {state} in {self.seconds[step]:.1f}s"
                    + (f": {rows}" if rows else "")
                )

    def summary(self) -> str:
        steps = [s for s in self.seconds if s in self.asset_steps]
        slowest = sorted(steps, key=self.seconds.get, reverse=True)[:3]
        return (
            f"Checks: {self.checks['passed']} passed, {self.checks['failed']} failed. "
            + (
                f"Failed steps: {', '.join(self.failed)} (details in {self.log_path}). "
                if self.failed
                else ""
            )
            + "Slowest steps: "
            + ", ".join(f"{s} {self.seconds[s]:.0f}s" for s in slowest)
        )


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

    log_path = settings.LOCAL_DIR / "demo.log"
    # librdkafka (a retry while the broker comes up) and whatever else writes to the
    # process's descriptors go to the log, like the run's event stream below; the broker's
    # JVM logs to its own data folder.
    with ConsoleToLog(log_path) as console:
        broker = LocalKafkaBroker(port=args.port).start()
        topic = settings.KAFKA_TOPIC
        console.say(
            f"Kafka broker at {broker.bootstrap_servers} (data in {broker.data_dir})"
        )
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
                start=continuing_start(broker.bootstrap_servers, topic),
                population_seed=POPULATION_SEED,
            ),
            labels_path=labels,
            log=console.say,
        )
        console.say(
            f"Produced {report.delivered:,} events to {topic} ({report.rate:,.0f}/s), "
            f"{report.labelled:,} labelled in {labels}"
        )

    instance = DagsterInstance.get()
    job = defs.resolve_implicit_global_asset_job_def()
    print(f"Materialising every asset; Dagster's full event log goes to {log_path}")
    t0 = time.monotonic()
    asset_steps = {
        a.node_def.name
        for a in defs.resolve_asset_graph().assets_defs
        if a.keys and a.is_executable
    }
    with Progress(instance, log_path, asset_steps) as progress:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_id=progress.run_id,
            # the event stream goes to the log file, not to the terminal
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
    print(progress.summary())
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
