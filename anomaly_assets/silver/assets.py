"""silver_events and silver_user_profile: features from bounded state, corrected when events
arrive out of order.

Each run reads only the bronze commits silver has not consumed (Delta Change Data Feed from
its cursor), the profiles of the batch's users and the silver rows of the days its windows
need. It upserts the new rows and the rows an earlier-arriving event corrects, then folds
every event older than the new watermark into the users' profiles: the newest event time
of the Kafka partition furthest behind, less the allowed lateness (idle partitions aside).
Events older than the watermark on arrival are processed against the
current profile and flagged ``late``.
"""

from datetime import datetime

from dagster import (
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    multi_asset,
)
from pydantic import Field

from anomaly_assets import settings
from anomaly_assets.core import cursors, spark_actions
from anomaly_assets.core.incremental import nothing_new
from anomaly_assets.core.lineage import column_lineage
from anomaly_assets.ingestion.bronze import BRONZE_COLUMNS
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.silver.features import (
    EVENT_COLUMNS,
    FEATURE_COLUMNS,
    FEATURE_INPUTS,
    FEATURES,
    stream_features,
)
from anomaly_assets.silver.profile import SET_CAPS, fold
from anomaly_assets.silver.step import PartitionMark, plan, to_fold
from anomaly_assets.stream import DEFAULT_STREAM, Stream


def lineage(stream: Stream) -> dict:
    """Carried columns keep their bronze name, except event_time (parsed from event_ts);
    each feature comes from the user's events' time and the columns FEATURE_INPUTS names."""
    return column_lineage(
        stream.key("bronze_events"),
        [c for c in EVENT_COLUMNS if c in BRONZE_COLUMNS],
        {
            "event_time": ["event_ts"],
            **{
                f: ["user_id", "event_ts", *FEATURE_INPUTS[f]]
                for f in stream_features(stream)
            },
        },
    )


CONSUMER = "silver_events"
OUTPUTS = ("silver_events", "silver_user_profile")


class SilverConfig(Config):
    allowed_lateness_s: int = Field(
        default=settings.ALLOWED_LATENESS_S,
        description="How far behind the newest event an event may arrive and still be "
        "placed exactly (correcting the rows after it); older arrivals are flagged late. "
        "Env ANOMALY_ALLOWED_LATENESS_S.",
    )
    idle_partition_s: int = Field(
        default=settings.PARTITION_IDLE_S,
        description="The watermark follows the Kafka partition furthest behind, except one "
        "no run has read events of for this long (wall clock): it is idle and does not hold "
        "the others back. Env ANOMALY_PARTITION_IDLE_S.",
    )


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def build_silver(stream: Stream = DEFAULT_STREAM):
    """silver_events and silver_user_profile of ``stream``."""

    @multi_asset(
        deps=[stream.key("bronze_events")],
        outs={
            "silver_events": stream.table_out(
                "silver",
                "team:data-platform",
                {"spark", "delta"},
                description="Typed events deduplicated by event_id, timestamps in UTC, the "
                "model's per-user behaviour features over event-time windows that span "
                "batches, and whether the event arrived later than the allowed lateness.",
                metadata={
                    "delta/write_mode": "merge_upsert",
                    "delta/merge_keys": ["event_id"],
                    "delta/compare_columns": ["late", *FEATURE_COLUMNS],
                    "delta/prune_days_column": "event_time",
                },
            ),
            "silver_user_profile": stream.table_out(
                "silver",
                "team:data-platform",
                {"spark", "delta"},
                description="One row per user: every event before the watermark folded into "
                "counts, exact sums, circular hour sums and capped sets of known countries, "
                "devices and IPs (first / last seen, count).",
                metadata={
                    "delta/write_mode": "merge_upsert",
                    "delta/merge_keys": ["user_id"],
                    "delta/compare_columns": ["events", "through"],
                    "set_caps": MetadataValue.json(SET_CAPS),
                },
            ),
        },
        name=stream.named("silver"),
        pool=stream.pool("silver_events"),
    )
    def silver(
        context: AssetExecutionContext,
        config: SilverConfig,
        lakehouse: LakehouseResource,
    ):
        with spark_actions.step(context):
            yield from refine(context, config, stream.lakehouse(lakehouse), stream)

    return silver


def refine(context, config: SilverConfig, lakehouse, stream: Stream):
    """Silver rows for bronze's new commits, and the profiles folded up to the watermark."""
    spark = lakehouse.spark_session
    pending = lakehouse.pending_changes(CONSUMER, "bronze_events")
    cursor, through, new = pending.cursor, pending.through, pending.changes
    if through is None:
        raise FileNotFoundError(
            "bronze_events does not exist yet: materialise it first."
        )
    if new is None:
        yield from nothing_new(context, "bronze_events", through, OUTPUTS)
        return
    profile_version = cursor.state.get("profile_version")
    profile = None
    if profile_version is not None:  # as of the last finished step, even on a retry
        profile = (
            spark.read.format("delta")
            .option("versionAsOf", profile_version)
            .load(lakehouse.path("silver_user_profile"))
        )
    step = plan(
        new,
        lakehouse.read("silver_events"),
        profile,
        _when(cursor.state.get("watermark")),
        config.allowed_lateness_s,
        {
            p: PartitionMark.from_state(m)
            for p, m in cursor.state.get("partitions", {}).items()
        },
        config.idle_partition_s,
    )
    context.log.info(
        f"Silver: bronze versions {cursor.version} → {through}, batches {step.batches[:10]}, "
        f"watermark {step.watermark} → {step.next_watermark}, {step.late:,} late"
    )
    common = {
        "batches": MetadataValue.json(step.batches),
        "bronze_version": through,
        "watermark": str(step.next_watermark),
        "partitions": MetadataValue.json(
            {p: m.to_state() for p, m in sorted(step.partitions.items())}
        ),
    }
    yield Output(
        step.rows,
        "silver_events",
        metadata={
            **common,
            "late_events": step.late,
            "allowed_lateness_s": config.allowed_lateness_s,
            "features": MetadataValue.md(
                "\n".join(f"- `{name}`: {doc}" for name, doc in FEATURES.items())
            ),
            **lineage(stream),
        },
    )
    folding = to_fold(step, lakehouse.read("silver_events"))
    folded = None if folding is None else fold(profile, folding, step.next_watermark)
    yield Output(folded, "silver_user_profile", metadata=common)
    step.new.unpersist()
    state = {
        "watermark": None
        if step.next_watermark is None
        else step.next_watermark.isoformat(),
        "partitions": {p: m.to_state() for p, m in step.partitions.items()},
        "profile_version": cursors.table_version(
            spark, lakehouse.path("silver_user_profile")
        ),
    }
    lakehouse.save_cursor(CONSUMER, "bronze_events", through, state)


silver = build_silver()
