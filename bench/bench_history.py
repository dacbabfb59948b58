"""Cost of one batch against the size of the history before it.

For each history size H (default 0, 1,000,000 and 5,000,000 events), in a fresh lakehouse and
topic: H events are ingested through ``ingest_job`` in runs of ``--history-batch`` events,
then one 20,000-event batch is timed through ``ingest_job`` (bronze → silver → gold →
enrichment → evaluation), with its per-step times. One champion model, trained first on a
separate topic, scores every case, so the cases differ only by their history. Prints the
figures side by side and the ratio of the largest history to none (target ≤ 1.5).

``python bench/bench_history.py [--history 0,1000000,5000000] [--batch 20000]``
"""

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import PeakMemory
from dagster import DagsterInstance

from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.offsets import fetch_offsets
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource
from anomaly_assets.resources.spark import SparkResource

N_USERS = 400
#: A busy stream (the generator's clock runs faster than real time at this rate); the clock
#: starts far enough back that no event lands after its own Kafka timestamp.
SESSIONS_PER_MINUTE = 60


def busy_stream(seed: int, n_events: int) -> EventGenerator:
    """The benches' stream: N_USERS users at SESSIONS_PER_MINUTE, its clock started so that
    ``n_events`` end before now (~4 events a session, with margin)."""
    span = timedelta(minutes=n_events / 4 / SESSIONS_PER_MINUTE * 1.5)
    return EventGenerator(
        seed=seed,
        n_users=N_USERS,
        anomaly_rate=0.01,
        start=datetime.now(UTC) - span - timedelta(days=1),
        sessions_per_minute=SESSIONS_PER_MINUTE,
    )


def _ranges(ends: dict[int, int], starts: dict[int, int]) -> list[dict]:
    return [
        {"partition": p, "start": starts.get(p, 0), "end": e}
        for p, e in sorted(ends.items())
        if e > starts.get(p, 0)
    ]


def _run(
    defs, instance, job: str, ranges: list[dict], extra_ops=None
) -> tuple[float, dict]:
    ops = {"bronze": {"config": {"ranges": ranges}}, **(extra_ops or {})}
    t0 = time.perf_counter()
    result = defs.resolve_job_def(job).execute_in_process(
        run_config={"ops": ops}, instance=instance, raise_on_error=True
    )
    wall = time.perf_counter() - t0
    steps = {
        s.step_key: s.end_time - s.start_time
        for s in instance.get_run_step_stats(result.run_id)
        if s.end_time and s.start_time
    }
    return wall, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", default="0,1000000,5000000")
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--history-batch", type=int, default=500_000)
    args = parser.parse_args()
    sizes = [int(h) for h in args.history.split(",")]
    spark = SparkResource(driver_memory="6g", log_level="ERROR")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        tmp = Path(tmp)
        broker = LocalKafkaBroker(
            port=free_port(), controller_port=free_port(), data_dir=tmp / "kafka"
        ).start()
        bs = broker.bootstrap_servers
        mlflow = MlflowResource(
            tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
            artifact_location=str(tmp / "mlartifacts"),
        )
        try:
            # The champion, trained once on its own topic (same stream shape).
            produce(
                bs,
                "train",
                50_000,
                busy_stream(1, 50_000),
                None,
                3,
                log=lambda *_: None,
            )
            kafka = KafkaResource(bootstrap_servers=bs, topic="train")
            lake = LakehouseResource(root=str(tmp / "train"), spark=spark)
            defs = make_definitions(
                build_resources(
                    spark, kafka=kafka, lakehouse=lake, mlflow_settings=mlflow
                )
            )
            ends = fetch_offsets({"bootstrap.servers": bs}, "train", 10)[1]
            _run(
                defs,
                instance,
                "ingest_and_train_job",
                _ranges(ends, {}),
                {"anomaly_model": {"config": {"labels_path": "/nonexistent"}}},
            )
            for history in sizes:
                topic = f"history-{history}"
                gen = busy_stream(7, history + args.batch)
                kafka = KafkaResource(
                    bootstrap_servers=bs,
                    topic=topic,
                    max_batch_events=args.history_batch,
                )
                lake = LakehouseResource(root=str(tmp / topic), spark=spark)
                defs = make_definitions(
                    build_resources(
                        spark, kafka=kafka, lakehouse=lake, mlflow_settings=mlflow
                    )
                )
                done: dict[int, int] = {}
                t0 = time.perf_counter()
                landed = 0
                while landed < history:
                    n = min(args.history_batch, history - landed)
                    produce(bs, topic, n, gen, None, 3, log=lambda *_: None)
                    ends = fetch_offsets({"bootstrap.servers": bs}, topic, 10)[1]
                    _run(defs, instance, "ingest_job", _ranges(ends, done))
                    done, landed = dict(ends), landed + n
                build_s = time.perf_counter() - t0
                produce(bs, topic, args.batch, gen, None, 3, log=lambda *_: None)
                ends = fetch_offsets({"bootstrap.servers": bs}, topic, 10)[1]
                with PeakMemory() as mem:
                    wall, steps = _run(
                        defs, instance, "ingest_job", _ranges(ends, done)
                    )
                rows.append((history, wall, steps, build_s, mem.peak_total))
                print(
                    f"history {history:>9,}: batch of {args.batch:,} in {wall:6.1f} s "
                    f"(history built in {build_s:.0f} s); steps "
                    + ", ".join(f"{k} {v:.1f}" for k, v in steps.items() if v >= 0.5),
                    flush=True,
                )
        finally:
            broker.stop()
    print(f"\nOne {args.batch:,}-event batch through ingest_job, by history size:")
    print(
        "| history events | batch wall s | bronze s | silver s | gold s | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|")
    for history, wall, steps, _, rss in rows:
        print(
            f"| {history:,} | {wall:.1f} | {steps.get('bronze', 0):.1f} | "
            f"{steps.get('silver', 0):.1f} | {steps.get('gold', 0):.1f} | {rss:.0f} |"
        )
    base, last = rows[0], rows[-1]
    print(
        f"\nratio {last[0]:,} / {base[0]:,} history: {last[1] / base[1]:.2f} "
        f"(target ≤ 1.5); median batch {statistics.median(r[1] for r in rows):.1f} s"
    )


if __name__ == "__main__":
    main()
