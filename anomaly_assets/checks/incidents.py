"""Asset check on gold_user_incidents: the incidents written hold exactly their users'
anomalies in their spans, each once (see checks/scope.py for what "written" reads)."""

from dagster import AssetCheckResult, asset_check

from anomaly_assets.checks.scope import AFTER_ASSETS, NOTHING, written_rows
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


def build_incident_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s tables."""

    incidents_key = stream.key("gold_user_incidents")

    @asset_check(
        asset=incidents_key,
        op_tags=AFTER_ASSETS,
        description="The incidents just written list each anomaly of their users and spans "
        "exactly once, with a matching event_count, and no two of them overlap in time.",
    )
    def incidents_cover_their_anomalies(context, lakehouse: LakehouseResource):
        from pyspark.sql import functions as F

        from anomaly_assets.lib.incidents import anomalies_in, collect_spans

        written = written_rows(context, lakehouse, incidents_key)
        if written is None:
            return NOTHING
        spans = collect_spans(written, "first_seen", "last_seen")
        if not spans:
            return NOTHING
        listed = written.select("user_id", F.explode("event_ids").alias("event_id"))
        gold = stream.lakehouse(lakehouse).read("gold_anomaly_predictions")
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

    return [incidents_cover_their_anomalies]
