"""Spark side of bronze: read exact Kafka offset ranges, validate every message on executors.

Kept apart from the asset so it can be run on any SparkSession without Dagster.
"""

import json
from datetime import UTC, datetime

from anomaly_assets.lib.offsets import OffsetRange
from anomaly_assets.lib.validation import PARSED_COLUMNS, classify, encode_raw, preview

#: (column, Spark type) of the validated frame: reader columns, the contract's parsed columns,
#: then raw bytes and the verdict. The Arrow schema of mapInArrow is derived from it.
VALIDATED_COLUMNS = (
    ("topic", "string"),
    ("partition", "int"),
    ("offset", "bigint"),
    ("kafka_ts", "timestamp"),
    ("key", "string"),
    ("event_id", "string"),
    ("event_type", "string"),
    ("event_ts", "string"),
    ("user_id", "string"),
    ("session_id", "string"),
    ("ip_address", "string"),
    ("country", "string"),
    ("device_type", "string"),
    ("user_agent", "string"),
    ("schema_version", "int"),
    ("success", "boolean"),
    ("amount", "double"),
    ("items", "int"),
    ("bytes_transferred", "bigint"),
    ("duration_ms", "int"),
    ("event_time", "timestamp"),
    ("extra_fields", "string"),
    ("raw_value", "string"),
    ("raw_value_b64", "string"),
    ("raw_preview", "string"),
    ("raw_size", "int"),
    ("reason", "string"),
    ("reason_detail", "string"),
)
VALIDATED_SCHEMA = ", ".join(f"`{n}` {t}" for n, t in VALIDATED_COLUMNS)


def _arrow_schema():
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int": pa.int32(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "timestamp": pa.timestamp("us", "UTC"),
    }
    return pa.schema([(n, types[t]) for n, t in VALIDATED_COLUMNS])


BRONZE_COLUMNS = (
    "topic",
    "partition",
    "offset",
    "kafka_ts",
    "key",
    *PARSED_COLUMNS,
    "raw_value",
    "batch_id",
    "ingested_at",
)
QUARANTINE_COLUMNS = (
    "topic",
    "partition",
    "offset",
    "kafka_ts",
    "key",
    "reason",
    "reason_detail",
    "raw_value_b64",
    "raw_preview",
    "raw_size",
    "batch_id",
    "ingested_at",
)


def read_ranges(spark, client_config: dict, topic: str, ranges: list[OffsetRange]):
    """Exactly the messages in ``ranges`` (half-open), as Spark's Kafka source rows."""
    partitions = [r.partition for r in ranges]
    if len(set(partitions)) != len(partitions):
        raise ValueError(f"one range per partition expected, got {ranges}")
    reader = spark.read.format("kafka")
    for key, value in client_config.items():
        reader = reader.option(f"kafka.{key}", value)
    return (
        reader.option("assign", json.dumps({topic: partitions}))
        .option(
            "startingOffsets",
            json.dumps({topic: {str(r.partition): r.start for r in ranges}}),
        )
        .option(
            "endingOffsets",
            json.dumps({topic: {str(r.partition): r.end for r in ranges}}),
        )
        .option("failOnDataLoss", "true")
        .load()
    )


def _validate_batches(batches):
    """mapInArrow body: one output row per input message, valid or not."""
    import pyarrow as pa

    schema = _arrow_schema()
    names = schema.names
    for batch in batches:
        cols = {n: [] for n in names}
        data = batch.to_pydict()
        for i, value in enumerate(data["value"]):
            event, reason, detail = classify(value)
            key = data["key"][i]
            cols["topic"].append(data["topic"][i])
            cols["partition"].append(data["partition"][i])
            cols["offset"].append(data["offset"][i])
            ts = data["timestamp"][i]
            cols["kafka_ts"].append(
                ts if ts is None or ts.tzinfo else ts.replace(tzinfo=UTC)
            )
            cols["key"].append(
                None if key is None else key.decode("utf-8", errors="replace")
            )
            for name in PARSED_COLUMNS:
                cols[name].append(None if event is None else event[name])
            cols["raw_value"].append(None if event is None else value.decode("utf-8"))
            cols["raw_value_b64"].append(
                None if event is not None else encode_raw(value)
            )
            cols["raw_preview"].append(None if event is not None else preview(value))
            cols["raw_size"].append(None if value is None else len(value))
            cols["reason"].append(reason)
            cols["reason_detail"].append(detail)
        yield pa.RecordBatch.from_pydict(cols, schema=schema)


def validate(raw_df, batch_id: str, ingested_at: datetime | None = None):
    """Every Kafka row classified: contract columns for valid events, a reason for the rest."""
    from pyspark.sql import functions as F

    ingested_at = ingested_at or datetime.now(UTC)
    return (
        raw_df.select("key", "value", "topic", "partition", "offset", "timestamp")
        .mapInArrow(_validate_batches, VALIDATED_SCHEMA)
        .withColumn("batch_id", F.lit(batch_id))
        .withColumn("ingested_at", F.lit(ingested_at).cast("timestamp"))
    )


def split(validated):
    """(bronze rows, quarantine rows) from the validated frame."""
    valid = validated.filter("reason IS NULL").select(*BRONZE_COLUMNS)
    invalid = validated.filter("reason IS NOT NULL").select(*QUARANTINE_COLUMNS)
    return valid, invalid


def high_water_marks(topic: str, *tables) -> dict[int, int]:
    """Next offset per partition of ``topic`` after the highest one stored in ``tables``."""
    from pyspark.sql import functions as F

    marks: dict[int, int] = {}
    for table in tables:
        if table is None:
            continue
        for row in (
            table.filter(F.col("topic") == topic)
            .groupBy("partition")
            .agg(F.max("offset").alias("m"))
            .collect()
        ):
            marks[row["partition"]] = max(marks.get(row["partition"], 0), row["m"] + 1)
    return marks
