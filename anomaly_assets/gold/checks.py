"""Checks of gold_anomaly_predictions: ranges, model versions, anomaly rate, contributions.

One op evaluates the rows the latest gold write inserted or re-scored (see core/checks.py)
with one aggregation per batch."""

from dagster import AssetCheckSpec, Config, MetadataValue, multi_asset_check
from pydantic import Field

from anomaly_assets.core.checks import by_name, nothing_written, result, written_rows
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


class GoldChecksConfig(Config):
    min_rate: float = Field(
        default=0.001, description="Warn below this share of anomalies in a batch."
    )
    max_rate: float = Field(
        default=0.05, description="Warn above this share of anomalies in a batch."
    )


def gold_figures(gold) -> dict:
    """batch_id -> rows, anomalies, rows out of range, rows without a model version and
    anomalies without contributions: everything the checks need, in one query."""
    from pyspark.sql import functions as F

    out_of_range = (
        ~F.col("anomaly_score").between(0.0, 1.0)
        | ~F.col("severity_percentile").between(0.0, 100.0)
        | F.col("anomaly_score").isNull()
        | F.col("severity_percentile").isNull()
    )
    unversioned = F.col("model_version").isNull() | F.col("model_name").isNull()
    unexplained = F.col("is_anomaly") & (
        F.col("feature_contributions").isNull() | (F.size("top_features") < 1)
    )
    rows = (
        gold.groupBy("batch_id")
        .agg(
            F.count("*").alias("rows"),
            F.count(F.when(F.col("is_anomaly"), 1)).alias("anomalies"),
            F.count(F.when(out_of_range, 1)).alias("out_of_range"),
            F.count(F.when(unversioned, 1)).alias("unversioned"),
            F.count(F.when(unexplained, 1)).alias("unexplained"),
        )
        .collect()
    )
    return {r["batch_id"]: r.asDict() for r in rows}


def gold_results(specs: dict, figures: dict, config: GoldChecksConfig) -> list:
    def total(name: str) -> int:
        return sum(f[name] for f in figures.values())

    rates = {b: f["anomalies"] / f["rows"] for b, f in figures.items() if f["rows"]}
    outside = {
        b: r for b, r in rates.items() if not config.min_rate <= r <= config.max_rate
    }
    return [
        result(
            specs["gold_scores_in_range"],
            total("out_of_range") == 0 and total("unversioned") == 0,
            {
                "rows_checked": total("rows"),
                "rows_out_of_range": total("out_of_range"),
                "rows_without_model_version": total("unversioned"),
            },
        ),
        result(
            specs["gold_anomalies_have_contributions"],
            total("unexplained") == 0,
            {"anomalies_without": total("unexplained")},
        ),
        result(
            specs["gold_anomaly_rate_in_band"],
            not outside,
            {
                "rates": MetadataValue.json(rates),
                "outside_band": MetadataValue.json(outside),
                "band": f"[{config.min_rate}, {config.max_rate}]",
            },
        ),
    ]


def build_gold_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s gold_anomaly_predictions."""
    gold_key = stream.key("gold_anomaly_predictions")
    specs = by_name(
        AssetCheckSpec(
            "gold_scores_in_range",
            asset=gold_key,
            blocking=True,
            description="anomaly_score in [0, 1], severity_percentile in [0, 100], "
            "and every row carries a model name and version.",
        ),
        AssetCheckSpec(
            "gold_anomalies_have_contributions",
            asset=gold_key,
            blocking=True,
            description="Every anomalous row has feature contributions and top "
            "features.",
        ),
        AssetCheckSpec(
            "gold_anomaly_rate_in_band",
            asset=gold_key,
            description="The anomaly rate of every batch in the latest write stays "
            "inside a band (warns): far outside it, the data or the model moved.",
        ),
    )

    @multi_asset_check(
        specs=list(specs.values()),
        name=stream.named("gold_anomaly_predictions_checks"),
        description="The rows the latest gold write inserted or re-scored, in one query.",
    )
    def gold_checks(context, config: GoldChecksConfig, lakehouse: LakehouseResource):
        gold = written_rows(context, lakehouse, gold_key)
        if gold is None:
            yield from nothing_written(*specs.values())
            return
        yield from gold_results(specs, gold_figures(gold), config)

    return [gold_checks]


GOLD_CHECKS = build_gold_checks()
