"""Generator throughput: 1,000,000 events produced to a fresh local broker (events/s).

Also prints the generation-only rate (no Kafka), so the cost of producing is visible.
``python bench/bench_generator.py [--events N]``
"""

import argparse
import tempfile
import time
from pathlib import Path

from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
from anomaly_assets.devtools.generator import EventGenerator, produce


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.events

    it = iter(EventGenerator(seed=1, anomaly_rate=0.01, malformed_rate=0.001))
    t0 = time.perf_counter()
    for _ in range(min(n, 200_000)):
        next(it)
    gen_rate = min(n, 200_000) / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalKafkaBroker(
            port=free_port(), controller_port=free_port(), data_dir=Path(tmp) / "kafka"
        ).start()
        try:
            report = produce(
                broker.bootstrap_servers,
                "bench-gen",
                n,
                EventGenerator(seed=1, anomaly_rate=0.01, malformed_rate=0.001),
                Path(tmp) / "labels.csv",
                partitions=3,
                progress_every=10,
            )
        finally:
            broker.stop()
    print(f"generator only (no Kafka)      : {gen_rate:>10,.0f} events/s")
    print(
        f"produced to Kafka, {n:,} events : {report.rate:>10,.0f} events/s "
        f"({report.seconds:.1f}s, {report.labelled:,} labelled)"
    )


if __name__ == "__main__":
    main()
