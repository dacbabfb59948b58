"""Asset check on gold_user_incidents: the incidents written hold exactly their users'
anomalies in their spans, each once (see checks/scope.py for what "written" reads)."""

from dagster import AssetCheckResult, AssetKey, asset_check

from anomaly_assets.checks.scope import AFTER_ASSETS, NOTHING, written_rows
from anomaly_assets.resources.lakehouse import LakehouseResource

INCIDENTS = AssetKey("gold_user_incidents")


@asset_check(
    asset=INCIDENTS,
    op_tags=AFTER_ASSETS,
    description="The incidents just written list each anomaly of their users and spans "
    "exactly once, with a matching event_count, and no two of them overlap in time.",
)
def incidents_cover_their_anomalies(context, lakehouse: LakehouseResource):
    from pyspark.sql import functions as F

    from anomaly_assets.lib.incidents import anomalies_in, collect_spans

    written = written_rows(context, lakehouse, "gold_user_incidents")
    if written is None:
        return NOTHING
    spans = collect_spans(written, "first_seen", "last_seen")
    if not spans:
        return NOTHING
    listed = written.select("user_id", F.explode("event_ids").alias("event_id"))
    gold = lakehouse.read("gold_anomaly_predictions")
    expected = anomalies_in(gold, spans).select("user_id", "event_id")
    a, b = written.alias("a"), written.alias("b")
    overlapping = a.join(
        b,
        (F.col("a.user_id") == F.col("b.user_id"))
        & (F.col("a.incident_id") < F.col("b.incident_id"))
        & (F.col("a.first_seen") <= F.col("b.last_seen"))
        & (F.col("b.first_seen") <= F.col("a.last_seen")),
    ).count()
    missing = expected.join(listed, ["user_id", "event_id"], "left_anti").count()
    extra = listed.join(expected, ["user_id", "event_id"], "left_anti").count()
    twice = listed.groupBy("event_id").count().filter("count > 1").count()
    miscounted = written.filter(F.size("event_ids") != F.col("event_count")).count()
    return AssetCheckResult(
        passed=not (missing or extra or twice or miscounted or overlapping),
        metadata={
            "incidents_checked": len(spans),
            "anomalies_missing": missing,
            "events_not_anomalies": extra,
            "events_in_two_incidents": twice,
            "event_count_wrong": miscounted,
            "overlapping_incidents": overlapping,
        },
    )


INCIDENT_CHECKS = [incidents_cover_their_anomalies]
