"""gold_user_incidents: a user's anomalies close in time merged into one incident.

Reads the gold rows changed since its cursor (Change Data Feed) and rebuilds only the spans
those changes can affect (gold/incidents.py); the table always equals one pass over gold.
"""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from anomaly_assets.core import cursors, delta_sql, priority
from anomaly_assets.core.lineage import column_lineage
from anomaly_assets.gold.attack import attack_version, techniques
from anomaly_assets.gold.incidents import rebuild, write
from anomaly_assets.io_managers.delta import delta_table_metadata
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

CONSUMER = "gold_user_incidents"
INCIDENT_SOURCES = {
    "first_seen": ["event_time"],
    "last_seen": ["event_time"],
    "event_count": ["event_id"],
    "event_ids": ["event_id"],
    "event_types": ["event_type"],
    "top_features": ["top_features"],
    "max_severity": ["severity_percentile"],
    "max_score": ["anomaly_score"],
    "status": ["status"],
    "batch_ids": ["batch_id"],
    "threat_types": ["top_features"],
    "attack_techniques": ["top_features"],
    "attack_tactics": ["top_features"],
}


class IncidentConfig(Config):
    gap_minutes: float = Field(
        default=30.0,
        description="A user's anomaly within this many minutes of the previous one joins "
        "its incident; a longer pause starts a new one.",
    )


def build_gold_user_incidents(stream: Stream = DEFAULT_STREAM):
    @asset(
        key=stream.key("gold_user_incidents"),
        deps=[stream.key("gold_anomaly_predictions")],
        description="One row per incident: a user's anomalies, each within the gap of the "
        "one before, with their event types, most frequent top features, highest severity "
        "and score, status (CRITICAL if any event is), first / last seen, event count and "
        "ids, threat types and their MITRE ATT&CK techniques and tactics: the unit an "
        "analyst triages.",
        group_name=stream.group("gold"),
        kinds={"spark", "delta"},
        tags={"layer": "gold"},
        owners=["team:ml-platform"],
        op_tags=priority.AFTER_ROWS,
        pool=stream.pool("gold_user_incidents"),
    )
    def gold_user_incidents(
        context: AssetExecutionContext,
        config: IncidentConfig,
        lakehouse: LakehouseResource,
    ) -> MaterializeResult:
        return rebuild_incidents(context, config, stream.lakehouse(lakehouse), stream)

    return gold_user_incidents


def rebuild_incidents(context, config: IncidentConfig, lakehouse, stream: Stream):
    """Rebuild the incidents that gold's changes since the cursor can affect."""
    spark = lakehouse.spark_session
    pending = lakehouse.pending_changes(CONSUMER, "gold_anomaly_predictions")
    if pending.through is None:
        raise FileNotFoundError(
            "gold_anomaly_predictions does not exist yet: materialise it first."
        )
    path = lakehouse.path(CONSUMER)
    before = delta_sql.version(spark, path)
    meta = {"gold_version": pending.through}
    rebuilt = None
    if pending.changes is not None:
        changed = cursors.latest_per_key(pending.changes, ["event_id"]).filter(
            "is_anomaly OR _change_type = 'update_postimage'"
        )
        stored = None if before is None else spark.read.format("delta").load(path)
        rebuilt = rebuild(
            lakehouse.read("gold_anomaly_predictions"),
            changed,
            stored,
            config.gap_minutes * 60,
            techniques(stream.attack),
        )
    if rebuilt is None:
        context.log.info("No anomaly changed since the last run: nothing to rebuild.")
    else:
        write(path, rebuilt, exists=before is not None)
        meta.update(delta_table_metadata(spark, path, before))
        meta["users_rebuilt"] = len(rebuilt[1])
        context.log.info(f"Rebuilt the incidents of {len(rebuilt[1]):,} user(s)")
    lakehouse.save_cursor(CONSUMER, "gold_anomaly_predictions", pending.through)
    meta["gap_minutes"] = config.gap_minutes
    meta["attack_version"] = attack_version()
    lineage = column_lineage(
        stream.key("gold_anomaly_predictions"), ["user_id"], INCIDENT_SOURCES
    )
    return MaterializeResult(metadata={**meta, **lineage})


gold_user_incidents = build_gold_user_incidents()
