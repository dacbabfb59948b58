"""Ingest N (default 1,000,000) generated events Kafka → bronze → silver on this machine.

Prints events/s and peak memory (process tree RSS, and its JVM part) for each stage, side by
side with the raw read rate of the same topic by a plain confluent-kafka consumer, measured
in the same run; then validation alone on the same Kafka rows, with the JVM path and with
every message through Python's ``classify`` (what bronze did before the JVM path).
``python bench/bench_ingest.py [--events N]``
"""

import argparse
import tempfile
import time
from pathlib import Path

from _common import PeakMemory
from confluent_kafka import Consumer, TopicPartition
from dagster import AssetKey, DagsterInstance, materialize

from anomaly_assets.definitions import build_resources
from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.ingestion.assets import bronze
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.offsets import fetch_offsets
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.spark import SparkResource
from anomaly_assets.silver.assets import silver

TOPIC = "bench-ingest"


def raw_consume(bootstrap: str, ends: dict[int, int]) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-raw",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in ends])
    want, got = sum(ends.values()), 0
    t0 = time.perf_counter()
    while got < want:
        for msg in consumer.consume(num_messages=10000, timeout=5):
            if msg.error() is None:
                got += 1
    seconds = time.perf_counter() - t0
    consumer.close()
    return seconds


def validation_paths(spark, bootstrap: str, ends: dict[int, int]) -> dict[str, float]:
    """Seconds to validate the topic's rows (read from Kafka, cached first) both ways."""
    from pyspark.sql import functions as F

    from anomaly_assets.ingestion import bronze as lib
    from anomaly_assets.ingestion.offsets import OffsetRange

    ranges = [OffsetRange(p, 0, e) for p, e in sorted(ends.items())]
    raw = lib.read_ranges(spark, {"bootstrap.servers": bootstrap}, TOPIC, ranges)
    raw = raw.select(*lib.SOURCE_COLUMNS).persist()
    raw.count()
    seconds = {}
    for name, force_python in (
        ("JVM path (+ Python for the rest)", False),
        ("Python classify for every message", True),
    ):
        t0 = time.perf_counter()
        staged = lib.stage(raw)
        if force_python:
            staged = staged.withColumn("_plain", F.lit(False))
        staged = staged.persist()
        validated = lib.validate(staged, "bench")
        validated.groupBy("validated_in", "reason").count().collect()
        seconds[name] = time.perf_counter() - t0
        staged.unpersist()
    raw.unpersist()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        broker = LocalKafkaBroker(
            port=free_port(), controller_port=free_port(), data_dir=Path(tmp) / "kafka"
        ).start()
        try:
            gen = EventGenerator(seed=3, anomaly_rate=0.01, malformed_rate=0.001)
            produce(
                broker.bootstrap_servers,
                TOPIC,
                n,
                gen,
                None,
                partitions=3,
                progress_every=15,
            )
            _, ends = fetch_offsets(
                {"bootstrap.servers": broker.bootstrap_servers}, TOPIC, 10
            )
            raw_s = raw_consume(broker.bootstrap_servers, ends)

            spark = SparkResource(log_level="ERROR")
            spark.spark_session.range(1).count()  # JVM start is not part of the stages
            kafka = KafkaResource(
                bootstrap_servers=broker.bootstrap_servers, topic=TOPIC
            )
            lakehouse = LakehouseResource(root=str(Path(tmp) / "lake"), spark=spark)
            resources = build_resources(spark, kafka=kafka, lakehouse=lakehouse)
            ranges = [
                {"partition": p, "start": 0, "end": e} for p, e in sorted(ends.items())
            ]
            config = {"ops": {"bronze": {"config": {"ranges": ranges}}}}
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                assert materialize(
                    [bronze, silver],
                    resources=resources,
                    instance=instance,
                    run_config=config,
                    selection=[
                        AssetKey("bronze_events"),
                        AssetKey("bronze_quarantine"),
                        AssetKey("bronze_offset_ledger"),
                    ],
                ).success
                bronze_s = time.perf_counter() - t0
                bronze_mem = (mem.peak_total, mem.peak_java)
                mem.reset()
                t0 = time.perf_counter()
                assert materialize(
                    [bronze, silver],
                    resources=resources,
                    instance=instance,
                    selection=[
                        AssetKey("silver_events"),
                        AssetKey("silver_user_profile"),
                    ],
                ).success
                silver_s = time.perf_counter() - t0
                silver_mem = (mem.peak_total, mem.peak_java)
            rows = lakehouse.read("silver_events").count()
            paths = validation_paths(
                spark.spark_session, broker.bootstrap_servers, ends
            )
        finally:
            broker.stop()
    print(
        f"\n{n:,} events, 3 partitions, 2 cores; peak memory = RSS of this process tree"
    )
    print(f"{'stage':<38}{'seconds':>9}{'events/s':>12}{'peak MiB (JVM)':>18}")
    print(
        f"{'raw confluent-kafka consumer read':<38}{raw_s:>9.1f}{n / raw_s:>12,.0f}{'-':>18}"
    )
    print(
        f"{'Kafka -> bronze + quarantine':<38}{bronze_s:>9.1f}{n / bronze_s:>12,.0f}"
        f"{f'{bronze_mem[0]:,.0f} ({bronze_mem[1]:,.0f})':>18}"
    )
    print(
        f"{'bronze -> silver (features)':<38}{silver_s:>9.1f}{n / silver_s:>12,.0f}"
        f"{f'{silver_mem[0]:,.0f} ({silver_mem[1]:,.0f})':>18}"
    )
    print(f"bronze rate / raw read rate = {raw_s / bronze_s:.3f}; silver rows {rows:,}")
    print("\nvalidation alone, same Kafka rows (cached), 2 cores")
    for name, seconds in paths.items():
        print(f"{name:<38}{seconds:>9.1f}{n / seconds:>12,.0f}")


if __name__ == "__main__":
    main()
