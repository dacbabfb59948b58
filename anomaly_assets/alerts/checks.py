"""Check of alert_outbox: every alert the latest run handled reached its channel (see
core/checks.py for what "written" reads)."""

from dagster import AssetCheckSpec, multi_asset_check

from anomaly_assets.core.checks import (
    nothing_written,
    result,
    written_rows,
)
from anomaly_assets.core.priority import AFTER_ASSETS
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

#: Not delivered, and no longer going to be without someone looking.
UNDELIVERED = ("failed",)
#: Not delivered yet; the next runs try again.
WAITING = ("retry", "sending", "pending")


#: A run moves an alert pending -> sending -> an outcome, in separate commits: the
#: furthest status of a key is where the run left it.
PROGRESS = ("pending", "sending", "retry")


def outbox_figures(written) -> dict:
    """Alerts the latest run wrote, by the status it left each in, in one query."""
    from pyspark.sql import functions as F

    rank = F.when(F.col("status") == "pending", 0).when(F.col("status") == "sending", 1)
    rank = rank.when(F.col("status") == "retry", 2).otherwise(3)
    last = (
        written.groupBy("key")
        .agg(F.max_by("status", rank).alias("status"))
        .groupBy("status")
        .agg(F.count("*").alias("n"))
    )
    counts = {r["status"]: r["n"] for r in last.collect()}
    return {
        "rows_checked": sum(counts.values()),
        "failed": sum(counts.get(s, 0) for s in UNDELIVERED),
        "waiting": sum(counts.get(s, 0) for s in WAITING),
        "by_status": counts,
    }


def build_alert_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The check of ``stream``'s alert_outbox."""
    key = stream.key("alert_outbox")
    spec = AssetCheckSpec(
        "alerts_delivered",
        asset=key,
        description="Every alert the latest run sent or recorded reached its channel: "
        "warns on alerts that failed (attempts spent, or refused for good) and on alerts "
        "still waiting for a retry (the receiver is down or throttling). Suppressed, "
        "snoozed and rate-limited alerts are by design.",
    )

    @multi_asset_check(
        specs=[spec],
        name=stream.named("alert_outbox_checks"),
        op_tags=AFTER_ASSETS,
        description="The alert rows the latest run wrote, by status.",
    )
    def alert_checks(context, lakehouse: LakehouseResource):
        written = written_rows(context, lakehouse, key)
        if written is None:
            yield from nothing_written(spec)
            return
        figures = outbox_figures(written)
        by_status = figures.pop("by_status")
        yield result(
            spec,
            figures["failed"] == 0 and figures["waiting"] == 0,
            {**figures, **{f"status_{k}": v for k, v in sorted(by_status.items())}},
        )

    return [alert_checks]
