"""Checks of bronze: every offset of a batch accounted for, its quarantined share and
retention skips (one op that reads the batch once, see core/checks.py), and no hole in
the offset ledger (after the assets: it asks Kafka)."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    Config,
    MetadataValue,
    RunsFilter,
    asset_check,
    multi_asset_check,
)
from pydantic import Field

from anomaly_assets.core.checks import (
    by_name,
    nothing_written,
    result,
)
from anomaly_assets.core.priority import AFTER_ASSETS
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.ledger import scan_ledger, verify_batch
from anomaly_assets.ingestion.offsets import (
    KafkaUnavailable,
    OffsetRange,
    fetch_topic_state,
)
from anomaly_assets.ingestion.sensor import IN_FLIGHT_STATUSES
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


def _latest_batch(event) -> dict | None:
    """The offset ranges and topic id of the ledger's latest write (this run's batch), from
    its materialisation event."""
    if event is None or event.asset_materialization is None:
        return None
    meta = event.asset_materialization.metadata
    return {
        "batch_id": meta["batch_id"].value,
        "topic_id": meta["topic_id"].value,
        "ranges": [OffsetRange(**r) for r in meta["offset_ranges"].value],
    }


def _overlapping(df, ranges, start_col: str, end_col: str | None = None):
    """Rows of ``df`` inside ``ranges`` (by partition and offsets): Delta skips other files."""
    from pyspark.sql import functions as F

    cond = None
    for r in ranges:
        if end_col is None:
            one = F.col(start_col).between(r.start, r.end - 1)
        else:
            one = (F.col(start_col) < r.end) & (F.col(end_col) > r.start)
        one = (F.col("partition") == r.partition) & one
        cond = one if cond is None else cond | one
    return df.filter(cond)


def _previous_marks(instance, check_key) -> dict:
    """contiguous_through of this check's last finished evaluation ({} when none; the
    current evaluation is already on record as planned, so finished ones only)."""
    from dagster._core.storage.asset_check_execution_record import (
        COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    )

    try:
        history = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
        )
        meta = history[0].event.dagster_event.event_specific_data.metadata
        return meta["contiguous_through"].value
    except (IndexError, AttributeError, KeyError, TypeError):
        return {}


def _in_flight_ranges(instance, topic: str, bronze_op: str) -> list[OffsetRange]:
    """Offset ranges of ingestion runs queued or running for ``topic``."""
    runs = instance.get_runs(
        RunsFilter(tags={"anomaly_assets/topic": topic}, statuses=IN_FLIGHT_STATUSES)
    )
    out = []
    for run in runs:
        config = (
            (run.run_config or {}).get("ops", {}).get(bronze_op, {}).get("config", {})
        )
        out += [OffsetRange(**r) for r in config.get("ranges", [])]
    return out


class BronzeChecksConfig(Config):
    max_ratio: float = Field(
        default=0.05, description="Warn above this quarantined share of a batch."
    )


def batch_ledger_rows(lakehouse, batch: dict) -> list[tuple]:
    """The ledger rows overlapping the batch's ranges: (partition, start, end, bronze,
    quarantine, skipped, batch_id)."""
    from pyspark.sql import functions as F

    ledger = lakehouse.read("bronze_offset_ledger")
    rows = _overlapping(
        ledger.filter(F.col("topic_id") == batch["topic_id"]),
        batch["ranges"],
        "start_offset",
        "end_offset",
    ).select(
        "partition",
        "start_offset",
        "end_offset",
        "bronze_rows",
        "quarantine_rows",
        "skipped",
        "batch_id",
    )
    return [tuple(r) for r in rows.collect()]


def stored_offsets(lakehouse, topic_id: str, spans: list[OffsetRange]) -> dict:
    """partition -> (rows, distinct offsets) in bronze_events ∪ bronze_quarantine over
    ``spans``."""
    from pyspark.sql import functions as F

    stored = None
    for name in ("bronze_events", "bronze_quarantine"):
        table = lakehouse.read(name)
        if table is not None:
            part = _overlapping(
                table.filter(F.col("topic_id") == topic_id), spans, "offset"
            ).select("partition", "offset")
            stored = part if stored is None else stored.unionByName(part)
    return {
        r["partition"]: (r["n"], r["d"])
        for r in stored.groupBy("partition")
        .agg(F.count("*").alias("n"), F.countDistinct("offset").alias("d"))
        .collect()
    }


def bronze_results(
    specs: dict, batch: dict, ledger_rows: list[tuple], stored: dict, lost: int, config
) -> list:
    """The batch's accounting, its quarantined share (from its own ledger rows) and its
    retention skips."""
    problems = verify_batch(batch["ranges"], [r[:6] for r in ledger_rows], stored)
    own = [r for r in ledger_rows if r[6] == batch["batch_id"]]
    bad = sum(r[4] for r in own)
    total = bad + sum(r[3] for r in own)
    ratio = bad / total if total else 0.0
    return [
        result(
            specs["bronze_batch_accounted"],
            not problems,
            {
                "batch_id": batch["batch_id"],
                "offsets_checked": sum(r.count for r in batch["ranges"]),
                "problems": MetadataValue.json(problems[:20]),
            },
        ),
        result(
            specs["quarantine_ratio_check"],
            ratio <= config.max_ratio,
            {
                "batch_id": batch["batch_id"],
                "quarantined": bad,
                "total": total,
                "ratio": ratio,
                "max_ratio": config.max_ratio,
            },
        ),
        result(
            specs["no_offsets_lost_to_retention"],
            lost == 0,
            {"skipped_retention": lost, "batch_id": batch["batch_id"]},
            description=None
            if lost == 0
            else f"{lost} offsets were deleted by retention before they were read: raise "
            "the topic's retention or ingest more often.",
        ),
    ]


def _landed_since(ledger, topic: str, topic_id: str, marks: dict[int, int]) -> dict:
    """partition -> [(start, end)] of the ledger rows past each partition's mark."""
    from pyspark.sql import functions as F

    rows = ledger.filter((F.col("topic") == topic) & (F.col("topic_id") == topic_id))
    for p, mark in marks.items():
        rows = rows.filter((F.col("partition") != p) | (F.col("end_offset") > mark))
    landed: dict[int, list[tuple[int, int]]] = {}
    for r in rows.select("partition", "start_offset", "end_offset").collect():
        landed.setdefault(r[0], []).append((r[1], r[2]))
    return landed


def ledger_holes(
    ledger, kafka, topic_id: str, previous: dict, flying: list[OffsetRange]
) -> AssetCheckResult:
    """The holes in ``topic_id``'s ledger past the offsets ``previous`` proved contiguous,
    each with whether a run in ``flying`` covers it; the new marks go in the metadata."""
    marks = {int(p): o for p, o in previous.get(topic_id, {}).items()}
    landed = _landed_since(ledger, kafka.topic, topic_id, marks)
    try:
        log_starts = fetch_topic_state(
            kafka.client_config(), kafka.topic, kafka.request_timeout_s
        ).starts
    except KafkaUnavailable:
        log_starts = {}
    new_marks, holes = scan_ledger(landed, marks, log_starts)
    described = [
        {
            "partition": h.partition,
            "start": h.start,
            "end": h.end,
            "run_in_flight": any(
                f.partition == h.partition and f.start < h.end and f.end > h.start
                for f in flying
            ),
        }
        for h in holes
    ]
    through = {str(p): o for p, o in {**marks, **new_marks}.items()}
    return AssetCheckResult(
        passed=not holes,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "holes": len(holes),
            "missing_offsets": sum(h.count for h in holes),
            "hole_ranges": MetadataValue.json(described[:50]),
            "ledger_rows_read": sum(len(v) for v in landed.values()),
            "contiguous_through": MetadataValue.json({**previous, topic_id: through}),
        },
    )


def build_bronze_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s bronze tables."""
    bronze = by_name(
        AssetCheckSpec(
            "bronze_batch_accounted",
            asset=stream.key("bronze_events"),
            additional_deps=[
                stream.key("bronze_quarantine"),
                stream.key("bronze_offset_ledger"),
            ],
            blocking=True,
            description="Every offset of the batch just written is in exactly one "
            "place: bronze_events, bronze_quarantine or a ledger skip with a reason. "
            "Reads only the batch's offsets.",
        ),
        AssetCheckSpec(
            "quarantine_ratio_check",
            asset=stream.key("bronze_quarantine"),
            description="Share of messages quarantined in the latest batch stays "
            "under a threshold (warns); read from the batch's ledger rows.",
        ),
        AssetCheckSpec(
            "no_offsets_lost_to_retention",
            asset=stream.key("bronze_offset_ledger"),
            description="No offset was deleted by retention before it was read "
            "(warns): the batch's retention skips, from the ledger write's own "
            "metadata.",
        ),
    )

    @multi_asset_check(
        specs=list(bronze.values()),
        name=stream.named("bronze_batch_checks"),
        description="The batch the latest bronze run wrote: its ledger rows and stored "
        "offsets, read once.",
    )
    def bronze_batch_checks(
        context, config: BronzeChecksConfig, lakehouse: LakehouseResource
    ):
        event = context.instance.get_latest_materialization_event(
            stream.key("bronze_offset_ledger")
        )
        batch = _latest_batch(event)
        if batch is None or not batch["ranges"]:
            yield from nothing_written(*bronze.values())
            return
        lake = stream.lakehouse(lakehouse)
        rows = batch_ledger_rows(lake, batch)
        spans = [OffsetRange(p, s, e) for p, s, e, *_ in rows] or batch["ranges"]
        stored = stored_offsets(lake, batch["topic_id"], spans)
        meta = event.asset_materialization.metadata
        lost = meta["skipped_retention"].value if "skipped_retention" in meta else 0
        yield from bronze_results(bronze, batch, rows, stored, lost, config)

    @asset_check(
        op_tags=AFTER_ASSETS,
        asset=stream.key("bronze_offset_ledger"),
        description="No hole in the offset ledger: per partition, every offset from the first "
        "landed one to the highest is in bronze, quarantine or a recorded skip. Reads only "
        "ledger rows past the last proven-contiguous offset. A hole means a batch failed: the "
        "sensor retries it with backoff, and a catch-up run (Materialize without config) "
        "fills it now.",
    )
    def offset_ledger_no_holes(
        context, kafka: KafkaResource, lakehouse: LakehouseResource
    ) -> AssetCheckResult:
        kafka = stream.kafka(kafka)
        batch = _latest_batch(
            context.instance.get_latest_materialization_event(
                stream.key("bronze_offset_ledger")
            )
        )
        ledger = stream.lakehouse(lakehouse).read("bronze_offset_ledger")
        if batch is None or ledger is None:
            return AssetCheckResult(passed=True, metadata={"holes": 0})
        previous = _previous_marks(context.instance, context.check_specs[0].key)
        flying = _in_flight_ranges(
            context.instance, kafka.topic, stream.named("bronze")
        )
        return ledger_holes(ledger, kafka, batch["topic_id"], previous, flying)

    return [bronze_batch_checks, offset_ledger_no_holes]
