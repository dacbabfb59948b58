"""bronze_events, bronze_quarantine and bronze_offset_ledger: every Kafka offset of a batch
lands in exactly one place, and the ledger says where.

Exactly once: both tables are written with a Delta MERGE that inserts only offsets whose
(topic, topic_id, partition, offset) is not stored yet, and a run reads only the offsets of
its ranges that have no ledger row. The ledger row is written last, so it is the batch's
commit record: a crash before it leaves offsets that the retry (or a catch-up run) reads
again, and the MERGEs add nothing twice. Offsets come from the run config (the sensor's
exact ranges) or, for a manual run, from the ledger: its holes first, then new offsets.
"""

from dagster import (
    AssetExecutionContext,
    Backoff,
    Config,
    Jitter,
    MetadataValue,
    Output,
    RetryPolicy,
    multi_asset,
)
from pydantic import Field

from anomaly_assets.core import spark_actions
from anomaly_assets.ingestion import bronze as lib
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.ledger import (
    LANDED_THROUGH,
    LEDGER_SCHEMA,
    catch_up_ranges,
    landed_intervals,
    landed_through,
    subtract,
)
from anomaly_assets.ingestion.offsets import OffsetRange, batch_id, fetch_topic_state
from anomaly_assets.ingestion.validation import ValidationPolicy
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

OFFSET_KEYS = ["topic", "topic_id", "partition", "offset"]
_DELTA_MERGE = {
    "delta/write_mode": "merge_insert",
    "delta/merge_keys": OFFSET_KEYS,
    "delta/merge_range_column": "offset",
}

#: A broker restart or a network blip mid-read: retried in the run, with backoff.
KAFKA_RETRY = RetryPolicy(
    max_retries=3, delay=15, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


class OffsetRangeConfig(Config):
    partition: int
    start: int = Field(description="First offset, inclusive.")
    end: int = Field(description="Last offset + 1.")


class BronzeConfig(Config):
    """Set by the Kafka offsets sensor; leave empty in the launchpad to catch up."""

    batch_id: str = Field(default="", description="Derived from the ranges when empty.")
    topic_id: str = Field(
        default="",
        description="Kafka topic id the ranges were planned on; empty = the current one.",
    )
    ranges: list[OffsetRangeConfig] = Field(
        default_factory=list,
        description="Exact per-partition offset ranges; empty = the ledger's holes, then "
        "everything after its high-water marks up to the topic's end.",
    )
    max_events: int = Field(
        default=200_000, description="Cap for a catch-up run without ranges."
    )


def _range_text(ranges: list[OffsetRange]) -> str:
    return ", ".join(f"p{r.partition}:[{r.start},{r.end})" for r in ranges) or "none"


def build_bronze(stream: Stream = DEFAULT_STREAM):
    """bronze_events, bronze_quarantine and bronze_offset_ledger of ``stream``."""

    @multi_asset(
        outs={
            "bronze_events": stream.table_out(
                "bronze",
                "team:data-platform",
                {"spark", "delta", "kafka"},
                description="Every valid Kafka message once: raw JSON, key, topic id, offsets, "
                "Kafka timestamp, batch id, ingestion time and the contract's parsed columns.",
                metadata=_DELTA_MERGE,
            ),
            "bronze_quarantine": stream.table_out(
                "bronze",
                "team:data-platform",
                {"spark", "delta", "kafka"},
                description="Every message that broke the event contract: raw bytes (base64), "
                "offsets, batch id and a machine-readable reason.",
                metadata=_DELTA_MERGE,
            ),
            "bronze_offset_ledger": stream.table_out(
                "bronze",
                "team:data-platform",
                {"spark", "delta", "kafka"},
                description="One row per landed offset range: how many offsets went to bronze, "
                "to quarantine and to skips (retention, transaction markers, aborted records, "
                "compaction, deleted topic), so every offset is accounted for.",
                metadata={
                    "delta/write_mode": "merge_insert",
                    "delta/merge_keys": [
                        "topic",
                        "topic_id",
                        "partition",
                        "start_offset",
                    ],
                },
            ),
        },
        name=stream.named("bronze"),
        pool=stream.pool("bronze"),
        retry_policy=KAFKA_RETRY,
    )
    def bronze(
        context: AssetExecutionContext,
        config: BronzeConfig,
        kafka: KafkaResource,
        lakehouse: LakehouseResource,
    ):
        with spark_actions.step(context):
            yield from ingest(
                context,
                config,
                stream.kafka(kafka),
                stream.lakehouse(lakehouse),
                ValidationPolicy(event_types=stream.event_types),
            )

    return bronze


bronze = build_bronze()


def ingest(context, config: BronzeConfig, kafka, lakehouse, policy: ValidationPolicy):
    """Land the batch's offsets not landed yet: bronze, quarantine, then the ledger."""
    spark = lakehouse.spark_session
    state = fetch_topic_state(
        kafka.client_config(),
        kafka.topic,
        kafka.request_timeout_s,
        kafka.read_committed,
    )
    topic_id = config.topic_id or state.topic_id
    ledger = lakehouse.read("bronze_offset_ledger")
    if config.ranges:  # the ledger rows overlapping the ranges are enough
        requested = [OffsetRange(r.partition, r.start, r.end) for r in config.ranges]
        landed = landed_intervals(ledger, kafka.topic, topic_id, requested)
    else:
        landed = landed_intervals(ledger, kafka.topic, topic_id)
        requested = catch_up_ranges(landed, state.starts, state.ends, config.max_events)
    pieces = subtract(requested, landed)
    bid = config.batch_id or batch_id(kafka.topic, requested)
    context.log.info(
        f"Batch {bid}: {kafka.topic} (id {topic_id}) requested {_range_text(requested)}; "
        f"not landed yet: {_range_text(pieces)}"
    )
    if topic_id != state.topic_id:
        context.log.warning(
            f"Topic {kafka.topic} now has id {state.topic_id}, not {topic_id}: it was "
            "deleted and created again; this batch's offsets are recorded as topic_deleted."
        )
    batch = lib.prepare_batch(
        spark,
        kafka.client_config(),
        state,
        topic_id,
        pieces,
        bid,
        kafka.read_committed,
        kafka.request_timeout_s,
        policy,
    )
    skipped: dict[str, int] = {}
    for s in batch.skips:
        skipped[s.reason] = skipped.get(s.reason, 0) + s.count
    verdicts = batch.validated.groupBy("validated_in", "reason").count().collect()
    reasons: dict[str, int] = {}
    for r in verdicts:
        if r["reason"] is not None:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + r["count"]
    in_python = sum(r["count"] for r in verdicts if r["validated_in"] == "python")
    context.log.info(
        f"Batch {bid}: {batch.n_valid:,} valid, {batch.n_quarantined:,} quarantined "
        f"{reasons or ''}, {sum(skipped.values()):,} skipped {skipped or ''}; "
        f"{in_python:,} messages needed the Python validator"
    )
    if skipped.get("retention"):
        context.log.warning(
            f"{skipped['retention']:,} offsets of {kafka.topic} were deleted by retention "
            "before they were read."
        )
    batch_meta = {
        "batch_id": bid,
        "topic_id": topic_id,
        "offset_ranges": MetadataValue.json([r.__dict__ for r in requested]),
        "offsets_in_batch": sum(r.count for r in requested),
        "offsets_read_now": sum(r.count for r in pieces),
    }
    valid, invalid = lib.split(batch.validated)
    yield Output(
        valid,
        "bronze_events",
        metadata={
            **batch_meta,
            "valid": batch.n_valid,
            "validated_in_python": in_python,
        },
    )
    yield Output(
        invalid,
        "bronze_quarantine",
        metadata={
            **batch_meta,
            "quarantined": batch.n_quarantined,
            "reasons": MetadataValue.json(reasons),
        },
    )
    yield Output(
        spark.createDataFrame(batch.ledger, LEDGER_SCHEMA),
        "bronze_offset_ledger",
        metadata={
            **batch_meta,
            LANDED_THROUGH: MetadataValue.json(
                landed_through(
                    context.instance,
                    context.asset_key_for_output("bronze_offset_ledger"),
                    kafka.topic,
                    topic_id,
                    requested,
                )
            ),
            "skipped": sum(skipped.values()),
            "skipped_by_reason": MetadataValue.json(skipped),
            "skipped_retention": skipped.get("retention", 0),
        },
    )
    batch.release()
