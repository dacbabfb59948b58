"""Spark side of bronze: read exact Kafka offset ranges, validate every message on executors.

Kept apart from the asset so it can be run on any SparkSession without Dagster.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from anomaly_assets.ingestion.jvm_validation import typed_columns, typed_in_jvm
from anomaly_assets.ingestion.ledger import (
    Skip,
    classify_gaps,
    ledger_rows,
    missing,
    split_unreadable,
    uncommitted_offsets,
)
from anomaly_assets.ingestion.offsets import OffsetRange, TopicState, is_compacted
from anomaly_assets.ingestion.validation import (
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
#: The columns of Spark's Kafka source that validation reads.
SOURCE_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")
KAFKA_SOURCE_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset bigint, "
    "timestamp timestamp"
)


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
    "topic_id",
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
    "topic_id",
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


def read_ranges(
    spark,
    client_config: dict,
    topic: str,
    ranges: list[OffsetRange],
    read_committed: bool = True,
):
    """Exactly the messages in ``ranges`` (half-open), as Spark's Kafka source rows.

    Under read_committed, transaction markers and aborted records are not returned; the
    ledger records them as skips. ``failOnDataLoss`` stays on: an offset deleted between
    planning and reading fails the read, and the retry records it as a retention skip.
    """
    reader = spark.read.format("kafka")
    for key, value in client_config.items():
        reader = reader.option(f"kafka.{key}", value)
    layers: list[list[OffsetRange]] = []  # the source takes one range per partition
    for r in sorted(ranges):
        layer = next(
            (lr for lr in layers if r.partition not in {x.partition for x in lr}), None
        )
        if layer is None:
            layers.append(layer := [])
        layer.append(r)
    frames = [
        reader.option(
            "kafka.isolation.level",
            "read_committed" if read_committed else "read_uncommitted",
        )
        .option("assign", json.dumps({topic: [r.partition for r in layer]}))
        .option(
            "startingOffsets",
            json.dumps({topic: {str(r.partition): r.start for r in layer}}),
        )
        .option(
            "endingOffsets",
            json.dumps({topic: {str(r.partition): r.end for r in layer}}),
        )
        .option("failOnDataLoss", "true")
        # Split large offset ranges so every core validates: three Kafka partitions on two
        # cores would otherwise leave one core idle for a third of the read.
        .option("minPartitions", spark.conf.get("spark.sql.shuffle.partitions"))
        .load()
        for layer in layers
    ]
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


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


def stage(raw_df, policy: ValidationPolicy = DEFAULT_POLICY):
    """Kafka rows with ``_plain``: whether the JVM types the message itself, and if so its
    values (ingestion/jvm_validation.py). Persist it before ``validate``: the parse then runs once
    per message, and Kafka is read once for both paths."""
    from pyspark.sql import functions as F

    typed = typed_in_jvm(raw_df.select(*SOURCE_COLUMNS), policy)
    plain = F.col("_plain")
    return typed.select(
        *SOURCE_COLUMNS,
        plain,
        F.when(plain, F.col("_v")).alias("_v"),
        F.when(plain, F.col("_time")).alias("_time"),
    )


def classify_in_python(staged, policy: ValidationPolicy = DEFAULT_POLICY):
    """The staged rows the JVM could not type, through Python's ``classify``."""
    return (
        staged.filter("NOT _plain")
        .select(*SOURCE_COLUMNS)
        .mapInArrow(_validator(policy), VALIDATED_SCHEMA)
    )


def validate(
    staged,
    batch_id: str,
    topic_id: str = "",
    ingested_at: datetime | None = None,
    policy: ValidationPolicy = DEFAULT_POLICY,
    in_python=None,
):
    """Every staged Kafka row classified: contract columns for valid events, a reason for
    the rest. Plainly valid messages were typed in the JVM; only the others pay for Python's
    ``classify`` (``in_python``: that frame, if the caller persisted it). ``validated_in``
    says which path a row took."""
    from pyspark.sql import functions as F

    ingested_at = ingested_at or datetime.now(UTC)
    columns = {
        "topic": F.col("topic"),
        "partition": F.col("partition"),
        "offset": F.col("offset"),
        "kafka_ts": F.col("timestamp"),
        "key": F.col("key").cast("string"),
        **typed_columns(),
    }
    plain = (
        staged.filter("_plain")
        .withColumn("_text", F.col("value").cast("string"))
        .select(*[columns[n].cast(t).alias(n) for n, t in VALIDATED_COLUMNS])
    )
    if in_python is None:
        in_python = classify_in_python(staged, policy)
    return (
        plain.withColumn("validated_in", F.lit("jvm"))
        .unionByName(in_python.withColumn("validated_in", F.lit("python")))
        .withColumns(
            {
                "topic_id": F.lit(topic_id),
                "batch_id": F.lit(batch_id),
                "ingested_at": F.lit(ingested_at).cast("timestamp"),
            }
        )
    )


def split(validated):
    """(bronze rows, quarantine rows) from the validated frame."""
    valid = validated.filter("reason IS NULL").select(*BRONZE_COLUMNS)
    invalid = validated.filter("reason IS NOT NULL").select(*QUARANTINE_COLUMNS)
    return valid, invalid


def returned_runs(validated) -> list[tuple[int, int, int, int]]:
    """(partition, start, end, valid rows) of each contiguous run of returned offsets: one
    small aggregation, whatever the batch size. Refuses a read with a repeated offset."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("partition").orderBy("offset")
    rows = (
        validated.select("partition", "offset", "reason")
        .withColumn("_run", F.col("offset") - F.row_number().over(order))
        .groupBy("partition", "_run")
        .agg(
            F.min("offset").alias("start"),
            (F.max("offset") + 1).alias("end"),
            F.count("*").alias("n"),
            F.sum(F.col("reason").isNull().cast("long")).alias("valid"),
        )
        .collect()
    )
    for row in rows:
        if row["n"] != row["end"] - row["start"]:
            raise RuntimeError(
                f"Kafka returned an offset twice in partition {row['partition']} "
                f"[{row['start']}, {row['end']}); refusing to write the batch."
            )
    return sorted((r["partition"], r["start"], r["end"], r["valid"]) for r in rows)


@dataclass
class PreparedBatch:
    """A batch read and validated, with its ledger rows, ready to be written."""

    validated: object  # DataFrame over the persisted frames in ``cached``
    ledger: list[tuple]
    skips: list[Skip]
    n_valid: int
    n_quarantined: int
    cached: tuple = ()

    def release(self) -> None:
        """Free the cached frames once the batch is written."""
        for frame in self.cached:
            frame.unpersist()


def prepare_batch(
    spark,
    client_config: dict,
    state: TopicState,
    topic_id: str,
    pieces: list[OffsetRange],
    bid: str,
    read_committed: bool = True,
    timeout: float = 10.0,
    policy: ValidationPolicy = DEFAULT_POLICY,
) -> PreparedBatch:
    """Read ``pieces`` (the batch's offsets not landed yet), validate every message and
    account for every offset: returned ones by row, the rest as skips with a reason."""
    now = datetime.now(UTC)
    if topic_id != state.topic_id:  # planned on a topic that has since been deleted
        readable, skips = (
            [],
            [Skip(p.partition, p.start, p.end, "topic_deleted") for p in pieces],
        )
    else:
        readable, skips = split_unreadable(pieces, state.starts, state.ends)
    if readable:
        raw = read_ranges(spark, client_config, state.topic, readable, read_committed)
    else:
        raw = spark.createDataFrame([], KAFKA_SOURCE_SCHEMA)
    # One read of Kafka and one parse per message; the JVM path's rows are a projection of
    # ``staged``, so only the (usually few) Python verdicts are cached besides it.
    staged = stage(raw, policy).persist()
    in_python = classify_in_python(staged, policy).persist()
    validated = validate(staged, bid, topic_id, now, policy, in_python)
    runs = returned_runs(validated)
    compacted = None
    counts: dict[tuple[int, int], tuple[int, int]] = {}
    for part in readable:  # at most one readable part per piece, inside it
        inside = [
            (s, e, v)
            for p, s, e, v in runs
            if p == part.partition and part.start <= s < part.end
        ]
        gaps = missing(part, [(s, e) for s, e, _ in inside])
        if gaps:
            aborted = (
                uncommitted_offsets(
                    client_config, state.topic, part.partition, gaps, timeout
                )
                if read_committed
                else set()
            )
            if compacted is None:
                compacted = is_compacted(client_config, state.topic, timeout)
            skips += classify_gaps(part.partition, gaps, aborted, compacted)
        valid = sum(v for _, _, v in inside)
        counts[(part.partition, part.start)] = (
            valid,
            sum(e - s for s, e, _ in inside) - valid,
        )
    ledger = ledger_rows(state.topic, topic_id, bid, pieces, counts, skips, now)
    n_valid = sum(row[6] for row in ledger)
    n_quarantined = sum(row[7] for row in ledger)
    return PreparedBatch(
        validated, ledger, sorted(skips), n_valid, n_quarantined, (staged, in_python)
    )
