"""Freshness through the daemon and sensor, sensor tick duration, definitions load time.

Starts a throwaway broker and `dagster dev` (webserver + daemon, the sensor on, ticking every
``--interval`` s) on a temporary instance and lakehouse. A warm-up production lets the sensor's
cold start train the champion; then each round produces ``--events`` events and measures the
seconds from the start of the produce to the end of the sensor run(s) that wrote their rows to
gold_events_enriched (checked in the Delta table). Tick durations come from the sensor's
recorded ticks; the load time is `dagster definitions validate` wall time, as the UI pays it.

    ../.venv/bin/python bench_freshness.py [--events 10000] [--rounds 3] [--interval 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deltalake import DeltaTable

from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
from anomaly_assets.devtools.dagster_dev import (
    ROOT,
    DagsterDev,
    wait_for_sensor_offsets,
)
from anomaly_assets.devtools.generator import EventGenerator, produce

TOPIC = "bench-freshness"
TICKS = """{ sensorOrError(sensorSelector: {repositoryLocationName: "anomaly_assets",
  repositoryName: "__repository__", sensorName: "kafka_offsets_sensor"}) {
  ... on Sensor { sensorState { ticks(limit: 500) { status timestamp endTimestamp } } } } }"""
RUN_TIMES = """query($id: ID!) { runOrError(runId: $id) { ... on Run { startTime endTime } } }"""


def validate_seconds(home: Path, repeats: int = 3) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "definitions", "validate"]
            + ["-w", "workspace.yaml"],
            cwd=ROOT,
            env={**os.environ, "DAGSTER_HOME": str(home)},
            check=True,
            capture_output=True,
        )
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_freshness_") as tmp:
        tmp = Path(tmp)
        broker = LocalKafkaBroker(
            port=free_port(), controller_port=free_port(), data_dir=tmp / "kafka"
        ).start()
        env = {
            "ANOMALY_LAKEHOUSE_ROOT": str(tmp / "lake"),
            "ANOMALY_LOCAL_DIR": str(tmp / "local"),
            "ANOMALY_KAFKA_BOOTSTRAP": broker.bootstrap_servers,
            "ANOMALY_KAFKA_TOPIC": TOPIC,
            "ANOMALY_SENSOR_DEFAULT": "running",
            "ANOMALY_SENSOR_INTERVAL_S": str(args.interval),
        }
        os.environ.update({k: v for k, v in env.items() if k != "ANOMALY_KAFKA_TOPIC"})
        dev = DagsterDev(tmp / "home", env, tmp / "dagster_dev.log")
        loads = validate_seconds(tmp / "home")
        print(
            f"dagster definitions validate: median {statistics.median(loads):.2f} s "
            f"({', '.join(f'{s:.2f}' for s in loads)})"
        )
        gen = EventGenerator(seed=31, n_users=120, anomaly_rate=0.03)
        labels = tmp / "local" / "labels.csv"
        try:
            dev.start()
            quiet = {"log": lambda *_: None}
            t0 = time.time()
            produce(broker.bootstrap_servers, TOPIC, 3000, gen, labels, 2, **quiet)
            done = wait_for_sensor_offsets(dev, 3000)
            print(
                f"cold start (3,000 events, trains the model): {time.time() - t0:.1f} s"
            )
            total, seen, fresh = 3000, {r["runId"] for r in done}, []
            for i in range(args.rounds):
                t0 = time.time()
                produce(
                    broker.bootstrap_servers,
                    TOPIC,
                    args.events,
                    gen,
                    labels,
                    2,
                    **quiet,
                )
                total += args.events
                new = [
                    r
                    for r in wait_for_sensor_offsets(dev, total)
                    if r["runId"] not in seen
                ]
                seen |= {r["runId"] for r in new}
                end = max(
                    dev.gql(RUN_TIMES, {"id": r["runId"]})["runOrError"]["endTime"]
                    for r in new
                )
                enriched = DeltaTable(str(tmp / "lake" / "gold_events_enriched"))
                batches = set(
                    enriched.to_pyarrow_table(columns=["batch_id"])[
                        "batch_id"
                    ].to_pylist()
                )
                missing = {r["tags"]["anomaly_assets/batch_id"] for r in new} - batches
                assert not missing, f"no enriched rows for {missing}"
                fresh.append(end - t0)
                print(
                    f"round {i + 1}: {args.events:,} events -> gold_events_enriched in {fresh[-1]:.1f} s ({len(new)} run(s))"
                )
            ticks = dev.gql(TICKS)["sensorOrError"]["sensorState"]["ticks"]
            spans = [
                t["endTimestamp"] - t["timestamp"] for t in ticks if t["endTimestamp"]
            ]
            print(
                f"freshness: median {statistics.median(fresh):.1f} s over {len(fresh)} rounds "
                f"(sensor interval {args.interval} s)"
            )
            print(
                f"sensor tick: median {statistics.median(spans) * 1000:.0f} ms, "
                f"max {max(spans) * 1000:.0f} ms over {len(spans)} ticks"
            )
        finally:
            dev.stop()
            broker.stop()


if __name__ == "__main__":
    main()
