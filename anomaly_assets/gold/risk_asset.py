"""gold_user_risk: a risk score and level per user, kept from the incidents' changes.

Reads the incident commits since its cursor (Change Data Feed, deletes included: a user
whose anomalies were all re-scored as normal loses their incidents and their row), then
recomputes only those users' rows from all their incidents (gold/risk.py). The users of a
batch and their incidents are few, so they are read into the driver in one query.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from anomaly_assets.core import delta_sql, priority
from anomaly_assets.core.lineage import column_lineage
from anomaly_assets.gold.risk import (
    INCIDENT_INPUTS,
    LEVEL_ORDER,
    RISK_COLUMNS,
    RISK_SCHEMA,
    RiskWindow,
    risk_figures,
    risk_rows,
)
from anomaly_assets.io_managers.delta import delta_table_metadata
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

CONSUMER = "gold_user_risk"
RISK_SOURCES = {
    "as_of": ["last_seen"],
    "risk_score": ["status", "last_seen"],
    "risk_level": ["status", "last_seen"],
    "incident_count": ["incident_id"],
    "top_incident_ids": ["incident_id"],
    "threat_contributions": ["threat_types", "status", "last_seen"],
    "attack_techniques": ["attack_techniques"],
}


class RiskConfig(Config):
    window_days: float = Field(
        default=RiskWindow.window_days,
        gt=0,
        description="Incidents count toward a user's risk for this many days after the "
        "user's latest one.",
    )
    half_life_days: float = Field(
        default=RiskWindow.half_life_days,
        gt=0,
        description="An incident's points halve for every this many days it lies before "
        "the user's latest incident.",
    )


#: Answered by the step from the rows it wrote (no query of its own).
RISK_CHECK = AssetCheckSpec(
    "risk_scores_are_consistent",
    asset="gold_user_risk",
    description="The risk rows just written have a score in [0, 100), the level of "
    "that score, threat contributions that add up to it, and at least one incident.",
)


def build_gold_user_risk(stream: Stream = DEFAULT_STREAM):
    @asset(
        key=stream.key("gold_user_risk"),
        deps=[stream.key("gold_user_incidents")],
        description="One row per user with incidents: a 0-100 risk score from the user's "
        "incidents in a sliding window (status points, time decay, p-series weights), its "
        "level (none, low, moderate, high, critical), each threat type's share of the "
        "score, the strongest incidents and their ATT&CK techniques.",
        group_name=stream.group("gold"),
        kinds={"spark", "delta"},
        tags={"layer": "gold"},
        owners=["team:ml-platform"],
        op_tags=priority.AFTER_ROWS,
        pool=stream.pool("gold_user_risk"),
        check_specs=[
            AssetCheckSpec(
                RISK_CHECK.name,
                asset=stream.key("gold_user_risk"),
                description=RISK_CHECK.description,
            )
        ],
    )
    def gold_user_risk(
        context: AssetExecutionContext,
        config: stream.config(RiskConfig, "gold_user_risk"),
        lakehouse: LakehouseResource,
    ) -> MaterializeResult:
        return refresh_risk(context, config, stream.lakehouse(lakehouse), stream)

    return gold_user_risk


def changed_users_incidents(changes, incidents) -> tuple[list[str], list[dict]]:
    """(the users of the incident rows ``changes`` inserted, updated or deleted, every
    incident of those users as dicts of INCIDENT_INPUTS), in one query: a user whose
    incidents are all gone comes back as a row without an incident."""
    users = changes.select("user_id").distinct()
    rows = delta_sql.collect_utc(
        users.join(incidents.select(*INCIDENT_INPUTS), "user_id", "left"),
        ["last_seen"],
    )
    return (
        sorted({r["user_id"] for r in rows}),
        [r for r in rows if r["incident_id"] is not None],
    )


def write_risk(spark, path: str, rows: list[dict], users: list[str], exists: bool):
    """Replace the rows of ``users`` with ``rows`` in one Delta transaction (a user
    without incidents any more keeps no row)."""
    frame = spark.createDataFrame(
        [tuple(r[c] for c in RISK_COLUMNS) for r in rows], RISK_SCHEMA
    )
    writer = frame.write.format("delta").mode("overwrite")
    if exists:
        writer = writer.option("replaceWhere", delta_sql.in_list("user_id", users))
    writer.save(path)


def refresh_risk(context, config: RiskConfig, lakehouse, stream: Stream):
    spark = lakehouse.spark_session
    pending = lakehouse.pending_changes(
        CONSUMER, "gold_user_incidents", kinds=("insert", "update_postimage", "delete")
    )
    if pending.through is None:
        raise FileNotFoundError(
            "gold_user_incidents does not exist yet: materialise it first."
        )
    path = lakehouse.path(CONSUMER)
    before = delta_sql.version(spark, path)
    meta = {"incidents_version": pending.through, **config.model_dump()}
    users, incidents = (
        ([], [])
        if pending.changes is None
        else changed_users_incidents(
            pending.changes, lakehouse.read("gold_user_incidents")
        )
    )
    rows = []
    if users:
        window = RiskWindow(config.window_days, config.half_life_days)
        rows = risk_rows(incidents, window)
        write_risk(spark, path, rows, users, exists=before is not None)
        levels = {level: 0 for level in LEVEL_ORDER}
        for r in rows:
            levels[r["risk_level"]] += 1
        meta.update(delta_table_metadata(spark, path, before))
        meta["users_rescored"] = len(users)
        meta["levels_of_rescored"] = MetadataValue.json(levels)
        context.log.info(f"Re-scored the risk of {len(users):,} user(s): {levels}")
    else:
        context.log.info("No incident changed since the last run: nothing to re-score.")
    lakehouse.save_cursor(CONSUMER, "gold_user_incidents", pending.through)
    lineage = column_lineage(
        stream.key("gold_user_incidents"), ["user_id"], RISK_SOURCES
    )
    figures = risk_figures(rows)
    return MaterializeResult(
        metadata={**meta, **lineage},
        check_results=[
            AssetCheckResult(
                check_name=RISK_CHECK.name,
                passed=not any(v for k, v in figures.items() if k != "rows_checked"),
                severity=AssetCheckSeverity.WARN,
                metadata=figures,
            )
        ],
    )


gold_user_risk = build_gold_user_risk()
