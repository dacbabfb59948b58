"""Cold starts: the local Kafka broker (fresh data dir, jars cached) and a SparkSession with
Delta and the Kafka connector (fresh JVM, packages cached). Median of several, seconds.

``python bench/bench_cold_start.py [--repeat 3]``
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
from anomaly_assets.devtools.jars import kafka_broker_jars

SPARK_PROBE = """
import time
t0 = time.perf_counter()
from anomaly_assets.resources.spark import SparkResource
s = SparkResource(log_level="ERROR").spark_session
s.range(10).count()
print(time.perf_counter() - t0)
"""


def broker_cold_start() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalKafkaBroker(
            port=free_port(), controller_port=free_port(), data_dir=Path(tmp)
        )
        t0 = time.perf_counter()
        broker.start()
        seconds = time.perf_counter() - t0
        broker.stop()
    return seconds


def spark_cold_start() -> float:
    out = subprocess.run(
        [sys.executable, "-c", SPARK_PROBE], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    kafka_broker_jars()  # download once, outside the timing
    brokers = [broker_cold_start() for _ in range(args.repeat)]
    sparks = [spark_cold_start() for _ in range(args.repeat)]
    print(
        f"Kafka broker cold start (format + start + metadata ready): median "
        f"{statistics.median(brokers):.1f}s  runs {[round(b, 1) for b in brokers]}"
    )
    print(
        f"SparkSession cold start (JVM + Delta + Kafka packages, first job): median "
        f"{statistics.median(sparks):.1f}s  runs {[round(s, 1) for s in sparks]}"
    )


if __name__ == "__main__":
    main()
