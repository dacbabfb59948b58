"""Asset checks on ai_enrichment_eval_metrics: no quality regression, no missing batch."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    Config,
    MetadataValue,
    asset_check,
)
from pydantic import Field

from anomaly_assets.checks.scope import AFTER_ASSETS, NOTHING, written_rows
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


class RegressionConfig(Config):
    max_drop_points: float = Field(
        default=5.0,
        description="Warn when validity or groundedness falls by more than this "
        "many percentage points from the previous batch's row.",
    )


def build_evaluation_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s tables."""

    eval_key = stream.key("ai_enrichment_eval_metrics")

    @asset_check(
        op_tags=AFTER_ASSETS,
        asset=eval_key,
        description="Validity and groundedness did not regress against the "
        "previous batch's row by more than a margin (warns).",
    )
    def eval_no_regression(config: RegressionConfig, lakehouse: LakehouseResource):
        table = (
            stream.lakehouse(lakehouse)
            .read("ai_enrichment_eval_metrics")
            .filter("NOT is_comparison")
        )
        last_two = table.orderBy(table.evaluated_at.desc()).limit(2).collect()
        if len(last_two) < 2:
            return AssetCheckResult(
                passed=True, metadata={"note": "fewer than two batches yet"}
            )
        latest, previous = last_two
        drops = {
            m: previous[m] - latest[m] for m in ("validity_pct", "groundedness_pct")
        }
        return AssetCheckResult(
            passed=all(d <= config.max_drop_points for d in drops.values()),
            severity=AssetCheckSeverity.WARN,
            metadata={
                "drop_points": MetadataValue.json(drops),
                "latest": latest["batch_id"],
                "previous": previous["batch_id"],
            },
        )

    @asset_check(
        asset=eval_key,
        blocking=True,
        description="Every batch the latest enrichment wrote has its evaluation row.",
    )
    def eval_covers_every_batch(context, lakehouse: LakehouseResource):
        written = written_rows(context, lakehouse, stream.key("gold_events_enriched"))
        if written is None:
            return NOTHING
        enriched = {r[0] for r in written.select("batch_id").distinct().collect()}
        table = stream.lakehouse(lakehouse).read("ai_enrichment_eval_metrics")
        evaluated = {
            r[0]
            for r in table.filter(table.batch_id.isin(sorted(enriched)))
            .filter("NOT is_comparison")
            .select("batch_id")
            .distinct()
            .collect()
        }
        missing = sorted(enriched - evaluated)
        return AssetCheckResult(
            passed=not missing,
            metadata={"missing_batches": MetadataValue.json(missing)},
        )

    return [eval_no_regression, eval_covers_every_batch]


EVALUATION_CHECKS = build_evaluation_checks()
