"""Checks of ai_enrichment_eval_metrics: every enriched batch evaluated, no quality
regression."""

from dagster import AssetCheckSpec, Config, MetadataValue, multi_asset_check
from pydantic import Field

from anomaly_assets.core.checks import nothing_written, result, written_rows
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


class EvaluationChecksConfig(Config):
    max_drop_points: float = Field(
        default=5.0,
        description="Warn when validity or groundedness falls by more than this "
        "many percentage points from the previous batch's row.",
    )


def unevaluated_batches(enriched, metrics) -> list[str]:
    """Batches of the enriched rows with no evaluation row (comparison rows aside)."""
    evaluated = metrics.filter("NOT is_comparison").select("batch_id")
    missing = (
        enriched.select("batch_id")
        .distinct()
        .join(evaluated, "batch_id", "left_anti")
        .collect()
    )
    return sorted(r[0] for r in missing)


def regression(spec, metrics, config: EvaluationChecksConfig):
    """The latest evaluation row against the one before it."""
    table = metrics.filter("NOT is_comparison")
    last_two = table.orderBy(table.evaluated_at.desc()).limit(2).collect()
    if len(last_two) < 2:
        return result(spec, True, {"note": "fewer than two batches yet"})
    latest, previous = last_two
    drops = {m: previous[m] - latest[m] for m in ("validity_pct", "groundedness_pct")}
    return result(
        spec,
        all(d <= config.max_drop_points for d in drops.values()),
        {
            "drop_points": MetadataValue.json(drops),
            "latest": latest["batch_id"],
            "previous": previous["batch_id"],
        },
    )


def build_evaluation_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s ai_enrichment_eval_metrics."""
    eval_key = stream.key("ai_enrichment_eval_metrics")
    covers = AssetCheckSpec(
        "eval_covers_every_batch",
        asset=eval_key,
        blocking=True,
        description="Every batch the latest enrichment wrote has its evaluation row.",
    )
    no_regression = AssetCheckSpec(
        "eval_no_regression",
        asset=eval_key,
        description="Validity and groundedness did not regress against the previous "
        "batch's row by more than a margin (warns).",
    )

    @multi_asset_check(
        specs=[covers, no_regression],
        name=stream.named("ai_enrichment_eval_metrics_checks"),
        description="The evaluation rows against the latest enrichment's batches.",
    )
    def evaluation_checks(
        context, config: EvaluationChecksConfig, lakehouse: LakehouseResource
    ):
        metrics = stream.lakehouse(lakehouse).read("ai_enrichment_eval_metrics")
        written = written_rows(context, lakehouse, stream.key("gold_events_enriched"))
        if written is None:
            yield from nothing_written(covers)
        else:
            missing = unevaluated_batches(written, metrics)
            yield result(
                covers, not missing, {"missing_batches": MetadataValue.json(missing)}
            )
        yield regression(no_regression, metrics, config)

    return [evaluation_checks]


EVALUATION_CHECKS = build_evaluation_checks()
