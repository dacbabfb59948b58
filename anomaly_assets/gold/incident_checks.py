"""Check of gold_user_incidents: the incidents written hold exactly their users' anomalies
in their spans, each once (see core/checks.py for what "written" reads)."""

from dagster import AssetCheckSeverity, AssetCheckSpec, multi_asset_check

from anomaly_assets.core.checks import (
    nothing_written,
    result,
    written_rows,
)
from anomaly_assets.core.priority import AFTER_ASSETS
from anomaly_assets.gold.incidents import anomalies_in, collect_spans
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


def incident_figures(written, gold, spans: list[dict]) -> dict:
    """What is wrong with the written incidents, counted in one query: anomalies of their
    spans they miss, events they list that are no anomaly of theirs, events in two of them,
    wrong event counts, and overlapping incidents of one user."""
    from pyspark.sql import functions as F

    listed = written.select("user_id", F.explode("event_ids").alias("event_id"))
    expected = anomalies_in(gold, spans).select("user_id", "event_id")
    a, b = written.alias("a"), written.alias("b")
    overlapping = a.join(
        b,
        (F.col("a.user_id") == F.col("b.user_id"))
        & (F.col("a.incident_id") < F.col("b.incident_id"))
        & (F.col("a.first_seen") <= F.col("b.last_seen"))
        & (F.col("b.first_seen") <= F.col("a.last_seen")),
    )
    parts = {
        "anomalies_missing": expected.join(
            listed, ["user_id", "event_id"], "left_anti"
        ),
        "events_not_anomalies": listed.join(
            expected, ["user_id", "event_id"], "left_anti"
        ),
        "events_in_two_incidents": listed.groupBy("event_id")
        .count()
        .filter("count > 1"),
        "event_count_wrong": written.filter(
            F.size("event_ids") != F.col("event_count")
        ),
        "overlapping_incidents": overlapping,
    }
    counts = None
    for name, df in parts.items():
        one = df.agg(F.count("*").alias(name))
        counts = one if counts is None else counts.crossJoin(one)
    return counts.first().asDict()


def build_incident_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The check of ``stream``'s gold_user_incidents."""
    incidents_key = stream.key("gold_user_incidents")
    spec = AssetCheckSpec(
        "incidents_cover_their_anomalies",
        asset=incidents_key,
        description="The incidents just written list each anomaly of their users and "
        "spans exactly once, with a matching event_count, and no two of them overlap in "
        "time. Runs after the assets and blocks nothing, but fails as an error.",
    )

    @multi_asset_check(
        specs=[spec],
        name=stream.named("gold_user_incidents_checks"),
        op_tags=AFTER_ASSETS,
        description="The incidents the latest write produced, against gold's anomalies.",
    )
    def incident_checks(context, lakehouse: LakehouseResource):
        written = written_rows(context, lakehouse, incidents_key)
        spans = (
            [] if written is None else collect_spans(written, "first_seen", "last_seen")
        )
        if not spans:
            yield from nothing_written(spec)
            return
        gold = stream.lakehouse(lakehouse).read("gold_anomaly_predictions")
        figures = incident_figures(written, gold, spans)
        yield result(
            spec,
            not any(figures.values()),
            {"incidents_checked": len(spans), **figures},
            # an error, though it blocks nothing: a wrong incident misleads an analyst
            severity=AssetCheckSeverity.ERROR,
        )

    return [incident_checks]
