"""Check of gold_user_risk: the rows just written are scores the formula can give (see
core/checks.py for what "written" reads)."""

from dagster import AssetCheckSpec, multi_asset_check

from anomaly_assets.core.checks import (
    AFTER_ASSETS,
    nothing_written,
    result,
    written_rows,
)
from anomaly_assets.gold.risk import LEVELS
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

#: Rounding the contributions' sum may differ from the score by.
TOLERANCE = 1e-9


def risk_figures(written) -> dict:
    """Rows with a score outside [0, 100), a level that is not the score's, threat
    contributions that do not add up to the score, or no incident, counted in one query."""
    from pyspark.sql import functions as F

    level = F.lit("none")
    for name, lowest in reversed(LEVELS):
        level = F.when(F.col("risk_score") >= lowest, F.lit(name)).otherwise(level)
    summed = F.aggregate(
        F.map_values("threat_contributions"), F.lit(0.0), lambda acc, v: acc + v
    )
    wrong = {
        "score_out_of_range": ~F.col("risk_score").between(0, 100)
        | (F.col("risk_score") == 100),
        "level_not_the_scores": F.col("risk_level") != level,
        "contributions_not_the_score": F.abs(summed - F.col("risk_score")) > TOLERANCE,
        "rows_without_incidents": F.col("incident_count") < 1,
    }
    return (
        written.agg(
            F.count("*").alias("rows_checked"),
            *[
                F.count(F.when(F.coalesce(cond, F.lit(True)), 1)).alias(name)
                for name, cond in wrong.items()
            ],
        )
        .first()
        .asDict()
    )


def build_risk_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The check of ``stream``'s gold_user_risk."""
    risk_key = stream.key("gold_user_risk")
    spec = AssetCheckSpec(
        "risk_scores_are_consistent",
        asset=risk_key,
        description="The risk rows just written have a score in [0, 100), the level of "
        "that score, threat contributions that add up to it, and at least one incident.",
    )

    @multi_asset_check(
        specs=[spec],
        name=stream.named("gold_user_risk_checks"),
        op_tags=AFTER_ASSETS,
        description="The risk rows the latest write produced.",
    )
    def risk_checks(context, lakehouse: LakehouseResource):
        written = written_rows(context, lakehouse, risk_key)
        if written is None:
            yield from nothing_written(spec)
            return
        figures = risk_figures(written)
        failed = {k: v for k, v in figures.items() if k != "rows_checked"}
        yield result(spec, not any(failed.values()), figures)

    return [risk_checks]
