"""Process-wide defaults, read from environment variables so every entry point agrees.

Nothing here starts a service: these are plain values read at import time.
"""

import os
from pathlib import Path

#: Root of the local lakehouse: Delta tables, the Kafka broker's data, MLflow's sqlite store.
#: An object-store URI (s3a://, abfss://) is accepted for the tables; local services still
#: need a local folder, given by ANOMALY_LOCAL_DIR.
LAKEHOUSE_ROOT = os.environ.get(
    "ANOMALY_LAKEHOUSE_ROOT", str(Path.cwd() / ".lakehouse")
)
if "://" not in LAKEHOUSE_ROOT:
    # absolute: a Spark Connect server resolves relative paths against its own directory
    LAKEHOUSE_ROOT = str(Path(LAKEHOUSE_ROOT).resolve())

#: Local working folder for services started on this machine (broker data, ivy cache).
LOCAL_DIR = Path(
    os.environ.get(
        "ANOMALY_LOCAL_DIR",
        LAKEHOUSE_ROOT
        if "://" not in LAKEHOUSE_ROOT
        else str(Path.cwd() / ".lakehouse"),
    )
)

#: Cache for downloaded JVM jars (Kafka broker, Spark packages); survives lakehouse resets.
JAR_CACHE_DIR = Path(
    os.environ.get("ANOMALY_JAR_CACHE", str(Path.home() / ".cache" / "anomaly_assets"))
)

#: Spark master URL: local[*] here; spark://host:7077, k8s://https://..., yarn for a cluster.
SPARK_MASTER = os.environ.get("ANOMALY_SPARK_MASTER", "local[*]")

#: Spark Connect URL (sc://host:port): when set, runs attach to that server instead of
#: starting a JVM each (``make dev`` sets it to the warm local server).
SPARK_REMOTE = os.environ.get("ANOMALY_SPARK_REMOTE") or None

KAFKA_BOOTSTRAP_SERVERS = os.environ.get("ANOMALY_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
KAFKA_TOPIC = os.environ.get("ANOMALY_KAFKA_TOPIC", "user-activity")

#: Seconds between Kafka offsets sensor ticks.
SENSOR_INTERVAL_S = int(os.environ.get("ANOMALY_SENSOR_INTERVAL_S", "30"))

#: Most offsets one ingestion run reads (KafkaResource.max_batch_events).
MAX_BATCH_EVENTS = int(os.environ.get("ANOMALY_MAX_BATCH_EVENTS", "100000"))

#: How late (behind the newest event time) an event may arrive and still be placed exactly.
ALLOWED_LATENESS_S = int(os.environ.get("ANOMALY_ALLOWED_LATENESS_S", "3600"))

#: A Kafka partition no silver step has read events of for this long (wall clock) no longer
#: holds the watermark back.
PARTITION_IDLE_S = int(os.environ.get("ANOMALY_PARTITION_IDLE_S", "3600"))

#: Seconds the sensor waits before requesting a failed batch again (doubles per attempt).
RETRY_BASE_DELAY_S = float(os.environ.get("ANOMALY_RETRY_BASE_DELAY_S", "60"))

#: Whether the Kafka offsets sensor starts switched on in a new Dagster instance.
SENSOR_RUNNING = (
    os.environ.get("ANOMALY_SENSOR_DEFAULT", "running").lower() == "running"
)

#: When optimize_tables_job compacts the tables' small files (cron, UTC).
OPTIMIZE_CRON = os.environ.get("ANOMALY_OPTIMIZE_CRON", "17 3 * * *")
