"""Fetch every JVM artifact up front: the Kafka broker's jars and Spark's packages.

Spark resolves its packages (Delta, the Kafka connector) on the first session start;
doing it here once means runs and tests start from a warm cache.
"""

import time

from anomaly_assets import settings
from anomaly_assets.devtools.console import ConsoleToLog
from anomaly_assets.devtools.jars import kafka_broker_jars


def main() -> None:
    t0 = time.monotonic()
    lib = kafka_broker_jars()
    print(f"Kafka broker jars: {lib} ({time.monotonic() - t0:.1f}s)")
    from anomaly_assets.resources.spark import SparkResource

    t0 = time.monotonic()
    log_path = settings.LOCAL_DIR / "jars.log"
    print(f"Resolving Spark packages (the resolver's report goes to {log_path})")
    # The JVM's launcher prints ivy's report (a hundred lines) to the inherited stderr.
    with ConsoleToLog(log_path):
        resource = SparkResource(log_level="ERROR")
        resource.spark_session.range(1).count()
        resource.spark_session.stop()
    print(
        f"Spark packages {', '.join(resource.packages)} ready in {resource.ivy_dir} "
        f"({time.monotonic() - t0:.1f}s)"
    )


if __name__ == "__main__":
    main()
