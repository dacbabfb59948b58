"""Soak: many sensor-size batches through ``ingest_job`` in one process.

Each batch is timed and the process tree's RSS sampled; prints the median wall time of the
first 5 and of the last 5 batches (target: last / first ≤ 1.2), the peak RSS per tenth of
the run (target: flat), and the unchanged rows silver's and gold's writes rewrote per batch
(``rows_copied``: what a correction costs; it must not grow with the table).

``python bench/bench_soak.py [--batches 50] [--batch 20000]``
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import PeakMemory
from bench_history import _ranges, _run, busy_stream
from dagster import AssetKey, DagsterInstance

from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
from anomaly_assets.devtools.generator import produce
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.offsets import fetch_offsets
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource
from anomaly_assets.resources.spark import SparkResource


def _rows_copied(instance, table: str) -> int:
    event = instance.get_latest_materialization_event(AssetKey(table))
    value = event.asset_materialization.metadata.get("rows_copied")
    return 0 if value is None else int(value.value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20_000)
    args = parser.parse_args()
    spark = SparkResource(driver_memory="4g", log_level="ERROR")
    walls, peaks, copied = [], [], []
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        tmp = Path(tmp)
        broker = LocalKafkaBroker(
            port=free_port(), controller_port=free_port(), data_dir=tmp / "kafka"
        ).start()
        bs = broker.bootstrap_servers
        try:
            gen = busy_stream(11, args.batches * args.batch)
            kafka = KafkaResource(bootstrap_servers=bs, topic="soak")
            lake = LakehouseResource(root=str(tmp / "lake"), spark=spark)
            mlflow = MlflowResource(
                tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
                artifact_location=str(tmp / "mlartifacts"),
            )
            defs = make_definitions(
                build_resources(
                    spark, kafka=kafka, lakehouse=lake, mlflow_settings=mlflow
                )
            )
            done: dict[int, int] = {}
            with PeakMemory() as mem:
                for i in range(args.batches):
                    produce(bs, "soak", args.batch, gen, None, 3, log=lambda *_: None)
                    ends = fetch_offsets({"bootstrap.servers": bs}, "soak", 10)[1]
                    job = "ingest_and_train_job" if i == 0 else "ingest_job"
                    extra = (
                        {"anomaly_model": {"config": {"labels_path": "/nonexistent"}}}
                        if i == 0
                        else None
                    )
                    mem.reset()
                    t0 = time.perf_counter()
                    _run(defs, instance, job, _ranges(ends, done), extra)
                    walls.append(time.perf_counter() - t0)
                    peaks.append(mem.peak_total)
                    copied.append(
                        tuple(
                            _rows_copied(instance, t)
                            for t in ("silver_events", "gold_anomaly_predictions")
                        )
                    )
                    done = dict(ends)
                    print(
                        f"batch {i + 1:>3}: {walls[-1]:6.1f} s, peak RSS {peaks[-1]:.0f} "
                        f"MiB, rows copied silver {copied[-1][0]:,} gold {copied[-1][1]:,}",
                        flush=True,
                    )
        finally:
            broker.stop()
    steady = walls[1:]  # the first batch also trains the model
    first, last = statistics.median(steady[:5]), statistics.median(steady[-5:])
    print(
        f"\n{args.batches} batches of {args.batch:,}: median of batches 2-6 {first:.1f} s, "
        f"of the last 5 {last:.1f} s, ratio {last / first:.2f} (target ≤ 1.2)"
    )
    print(
        "rows copied by silver's / gold's writes, median of batches 2-6: "
        f"{statistics.median(c[0] for c in copied[1:6]):,.0f} / "
        f"{statistics.median(c[1] for c in copied[1:6]):,.0f}; of the last 5: "
        f"{statistics.median(c[0] for c in copied[-5:]):,.0f} / "
        f"{statistics.median(c[1] for c in copied[-5:]):,.0f}"
    )
    tenth = max(1, len(peaks) // 10)
    print(
        "peak RSS MiB per tenth of the run: "
        + ", ".join(
            f"{max(peaks[i : i + tenth]):.0f}" for i in range(0, len(peaks), tenth)
        )
    )


if __name__ == "__main__":
    main()
