"""bronze_events and bronze_quarantine: every Kafka offset of a batch lands in exactly one.

Exactly once: both tables are written with a Delta MERGE that inserts only offsets whose
(topic, partition, offset) is not stored yet. A retry after a crash, a re-run of the same
batch or a manual run overlapping a sensor batch therefore adds nothing twice, and each
write is one Delta transaction, so a crash never leaves half a batch. Offsets come from
the run config (the sensor's exact ranges) or, for a manual run, from the tables' own
high-water marks up to the topic's current end.
"""

from dagster import (
    AssetExecutionContext,
    AssetOut,
    Config,
    MetadataValue,
    Output,
    multi_asset,
)
from pydantic import Field
from pyspark.sql import functions as F

from anomaly_assets.lib import bronze as lib
from anomaly_assets.lib.offsets import (
    OffsetRange,
    batch_id,
    fetch_offsets,
    plan_batches,
)
from anomaly_assets.resources import KafkaResource
from anomaly_assets.resources.lakehouse import LakehouseResource

OFFSET_KEYS = ["topic", "partition", "offset"]
_DELTA_MERGE = {
    "delta/write_mode": "merge_insert",
    "delta/merge_keys": OFFSET_KEYS,
    "delta/merge_range_column": "offset",
}


class OffsetRangeConfig(Config):
    partition: int
    start: int = Field(description="First offset, inclusive.")
    end: int = Field(description="Last offset + 1.")


class BronzeConfig(Config):
    """Set by the Kafka offsets sensor; leave empty in the launchpad to catch up."""

    batch_id: str = Field(default="", description="Derived from the ranges when empty.")
    ranges: list[OffsetRangeConfig] = Field(
        default_factory=list,
        description="Exact per-partition offset ranges; empty = from the tables' high-water "
        "marks to the topic's end.",
    )
    max_events: int = Field(
        default=200_000, description="Cap for a catch-up run without ranges."
    )


def resolve_ranges(
    config: BronzeConfig, kafka: KafkaResource, lakehouse: LakehouseResource
):
    """The run's offset ranges: from config, or everything new since the stored offsets."""
    if config.ranges:
        return [OffsetRange(r.partition, r.start, r.end) for r in config.ranges]
    marks = lib.high_water_marks(
        kafka.topic,
        lakehouse.read("bronze_events"),
        lakehouse.read("bronze_quarantine"),
    )
    starts, ends = fetch_offsets(
        kafka.client_config(), kafka.topic, kafka.request_timeout_s
    )
    batches = plan_batches(
        marks, ends, config.max_events, max_batches=1, start_offsets=starts
    )
    return batches[0] if batches else []


@multi_asset(
    outs={
        "bronze_events": AssetOut(
            description="Every valid Kafka message once: raw JSON, key, offsets, Kafka "
            "timestamp, batch id, ingestion time and the contract's parsed columns.",
            group_name="bronze",
            kinds={"spark", "delta", "kafka"},
            metadata=_DELTA_MERGE,
            tags={"layer": "bronze"},
            owners=["team:data-platform"],
        ),
        "bronze_quarantine": AssetOut(
            description="Every message that broke the event contract: raw bytes (base64), "
            "offsets, batch id and a machine-readable reason.",
            group_name="bronze",
            kinds={"spark", "delta", "kafka"},
            metadata=_DELTA_MERGE,
            tags={"layer": "bronze"},
            owners=["team:data-platform"],
        ),
    },
    name="bronze",
)
def bronze(
    context: AssetExecutionContext,
    config: BronzeConfig,
    kafka: KafkaResource,
    lakehouse: LakehouseResource,
):
    ranges = resolve_ranges(config, kafka, lakehouse)
    bid = config.batch_id or batch_id(kafka.topic, ranges)
    total = sum(r.count for r in ranges)
    range_text = (
        ", ".join(f"p{r.partition}:[{r.start},{r.end})" for r in ranges) or "none"
    )
    context.log.info(f"Batch {bid}: {total:,} offsets of {kafka.topic} ({range_text})")
    spark = lakehouse.spark_session
    if ranges:
        raw = lib.read_ranges(spark, kafka.client_config(), kafka.topic, ranges)
        validated = lib.validate(raw, bid).persist()
    else:  # nothing new: an empty write keeps both tables and their metadata current
        validated = spark.createDataFrame([], lib.VALIDATED_SCHEMA).withColumns(
            {"batch_id": F.lit(bid), "ingested_at": F.current_timestamp()}
        )
    reasons = {
        row["reason"]: row["count"]
        for row in validated.groupBy("reason").count().collect()
    }
    n_valid = reasons.pop(None, 0)
    n_quarantined = sum(reasons.values())
    if n_valid + n_quarantined != total:
        raise RuntimeError(
            f"Read {n_valid + n_quarantined} messages for {total} offsets in batch {bid}; "
            "refusing to write a partial batch."
        )
    context.log.info(
        f"Batch {bid}: {n_valid:,} valid, {n_quarantined:,} quarantined {reasons or ''}"
    )
    batch_meta = {
        "batch_id": bid,
        "offset_ranges": MetadataValue.json([r.__dict__ for r in ranges]),
        "offsets_in_batch": total,
    }
    valid, invalid = lib.split(validated)
    yield Output(valid, "bronze_events", metadata={**batch_meta, "valid": n_valid})
    yield Output(
        invalid,
        "bronze_quarantine",
        metadata={
            **batch_meta,
            "quarantined": n_quarantined,
            "reasons": MetadataValue.json(reasons),
        },
    )
