"""Asset checks on gold_anomaly_predictions: ranges, model versions, anomaly rate, contributions.

Each evaluates the rows the latest gold write inserted or re-scored (see checks/scope.py)."""

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


def _gold(context, lakehouse: LakehouseResource, stream: Stream):
    return written_rows(context, lakehouse, stream.key("gold_anomaly_predictions"))


class AnomalyRateConfig(Config):
    min_rate: float = Field(
        default=0.001, description="Warn below this share of anomalies."
    )
    max_rate: float = Field(
        default=0.05, description="Warn above this share of anomalies."
    )


def build_gold_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s tables."""

    gold_key = stream.key("gold_anomaly_predictions")

    @asset_check(
        asset=gold_key,
        blocking=True,
        description="anomaly_score in [0, 1], severity_percentile in [0, 100], and every "
        "row carries a model name and version.",
    )
    def gold_scores_in_range(context, lakehouse: LakehouseResource) -> AssetCheckResult:
        from pyspark.sql import functions as F

        gold = _gold(context, lakehouse, stream)
        if gold is None:
            return NOTHING
        out_of_range = (
            ~F.col("anomaly_score").between(0.0, 1.0)
            | ~F.col("severity_percentile").between(0.0, 100.0)
            | F.col("anomaly_score").isNull()
            | F.col("severity_percentile").isNull()
        )
        no_version = F.col("model_version").isNull() | F.col("model_name").isNull()
        bad, unversioned = gold.agg(  # one query for both
            F.count(F.when(out_of_range, 1)), F.count(F.when(no_version, 1))
        ).first()
        return AssetCheckResult(
            passed=bad == 0 and unversioned == 0,
            metadata={
                "rows_out_of_range": bad,
                "rows_without_model_version": unversioned,
            },
        )

    @asset_check(
        op_tags=AFTER_ASSETS,
        asset=gold_key,
        description="The anomaly rate of every batch in the latest write stays inside a band "
        "(warns): far outside it, the data or the model moved.",
    )
    def gold_anomaly_rate_in_band(
        context, config: AnomalyRateConfig, lakehouse: LakehouseResource
    ) -> AssetCheckResult:
        from pyspark.sql import functions as F

        gold = _gold(context, lakehouse, stream)
        if gold is None:
            return NOTHING
        by_batch = (
            gold.groupBy("batch_id")
            .agg(
                F.count("*").alias("n"),
                F.sum(F.col("is_anomaly").cast("int")).alias("a"),
            )
            .collect()
        )
        rates = {r["batch_id"]: r["a"] / r["n"] for r in by_batch if r["n"]}
        outside = {
            b: r
            for b, r in rates.items()
            if not config.min_rate <= r <= config.max_rate
        }
        return AssetCheckResult(
            passed=not outside,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "rates": MetadataValue.json(rates),
                "outside_band": MetadataValue.json(outside),
                "band": f"[{config.min_rate}, {config.max_rate}]",
            },
        )

    @asset_check(
        asset=gold_key,
        blocking=True,
        description="Every anomalous row has feature contributions and top features.",
    )
    def gold_anomalies_have_contributions(
        context, lakehouse: LakehouseResource
    ) -> AssetCheckResult:
        from pyspark.sql import functions as F

        gold = _gold(context, lakehouse, stream)
        if gold is None:
            return NOTHING
        missing = gold.filter(
            F.col("is_anomaly")
            & (F.col("feature_contributions").isNull() | (F.size("top_features") < 1))
        ).count()
        return AssetCheckResult(
            passed=missing == 0, metadata={"anomalies_without": missing}
        )

    return [
        gold_scores_in_range,
        gold_anomaly_rate_in_band,
        gold_anomalies_have_contributions,
    ]


GOLD_CHECKS = build_gold_checks()
