"""Spark side of bronze: read exact Kafka offset ranges, validate every message on executors.

Kept apart from the asset so it can be run on any SparkSession without Dagster.
"""

import json
from datetime import UTC, datetime

from anomaly_assets.lib.offsets import OffsetRange
from anomaly_assets.lib.validation import (
    DEFAULT_POLICY,
    PARSED_COLUMNS,
    ValidationPolicy,
    classify,
    encode_raw,
    preview,
)

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


def _validated_row(value, key, topic, partition, offset, ts, policy) -> dict:
    kafka_ts = ts if ts is None or ts.tzinfo else ts.replace(tzinfo=UTC)
    event, reason, detail = classify(value, kafka_ts, policy)
    row = dict.fromkeys(PARSED_COLUMNS) if event is None else {**event}
    row.update(
        topic=topic,
        partition=partition,
        offset=offset,
        kafka_ts=kafka_ts,
        key=None if key is None else key.decode("utf-8", errors="replace"),
        raw_value=None if event is None else value.decode("utf-8"),
        raw_value_b64=None if event is not None else encode_raw(value),
        raw_preview=None if event is not None else preview(value),
        raw_size=None if value is None else len(value),
        reason=reason,
        reason_detail=detail,
    )
    return row


def _to_batch(rows: list[dict], schema):
    """Rows as one Arrow batch. Should a row still not fit the schema (a validator bug), it
    becomes a quarantine row with ``unencodable_row`` rather than failing the whole batch."""
    import pyarrow as pa

    try:
        return pa.RecordBatch.from_pylist(rows, schema=schema)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        pass
    fixed = []
    for row in rows:
        try:
            pa.RecordBatch.from_pylist([row], schema=schema)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            text = row["raw_value"]
            raw = text.encode("utf-8", "surrogatepass") if text is not None else None
            row = {
                **dict.fromkeys(schema.names),
                **{n: row[n] for n in ("topic", "partition", "offset", "kafka_ts")},
                "raw_value_b64": row["raw_value_b64"] or encode_raw(raw),
                "raw_preview": row["raw_preview"] or preview(raw),
                "raw_size": row["raw_size"],
                "reason": "unencodable_row",
                "reason_detail": f"{type(exc).__name__}: {exc}"[:300],
            }
        fixed.append(row)
    return pa.RecordBatch.from_pylist(fixed, schema=schema)


def _validator(policy: ValidationPolicy):
    """mapInArrow body: one output row per input message, valid or not."""

    def validate_batches(batches):
        schema = _arrow_schema()
        for batch in batches:
            data = batch.to_pydict()
            rows = [
                _validated_row(*fields, policy)
                for fields in zip(
                    data["value"],
                    data["key"],
                    data["topic"],
                    data["partition"],
                    data["offset"],
                    data["timestamp"],
                    strict=True,
                )
            ]
            yield _to_batch(rows, schema)

    return validate_batches


def validate(
    raw_df,
    batch_id: str,
    ingested_at: datetime | None = None,
    policy: ValidationPolicy = DEFAULT_POLICY,
):
    """Every Kafka row classified: contract columns for valid events, a reason for the rest."""
    from pyspark.sql import functions as F

    ingested_at = ingested_at or datetime.now(UTC)
    return (
        raw_df.select("key", "value", "topic", "partition", "offset", "timestamp")
        .mapInArrow(_validator(policy), VALIDATED_SCHEMA)
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
