"""Asset checks on gold_events_enriched: validity, CRITICAL coverage, groundedness; each on
the rows the latest enrichment wrote (see checks/scope.py)."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    Config,
    MetadataValue,
    asset_check,
)
from pydantic import Field

from anomaly_assets.checks.scope import AFTER_ASSETS, NOTHING, written_rows
from anomaly_assets.llm.statuses import EXPLAINED, PARSED
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


class ValidityConfig(Config):
    min_validity: float = Field(
        default=0.9,
        description="Least share of attempted rows whose answer parsed into the "
        "schema, after re-asks (ungrounded answers count: groundedness is its own check).",
    )


class GroundednessConfig(Config):
    min_grounded: float = Field(
        default=0.9,
        description="Least share of answers (rows whose answer parsed) that passed the "
        "evidence checks and name only the row's real top contributors.",
    )


def build_enrichment_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s tables."""

    enriched_key = stream.key("gold_events_enriched")

    @asset_check(
        asset=enriched_key,
        blocking=True,
        description="Share of the latest run's anomalies (budget skips aside) whose "
        "answer passed Pydantic validation is at least min_validity.",
    )
    def enrichment_validity(
        context, config: ValidityConfig, lakehouse: LakehouseResource
    ):
        df = written_rows(context, lakehouse, enriched_key)
        if df is None:
            return NOTHING
        latest = df.filter("enrichment_status != 'skipped_budget'")
        counts = {
            r["enrichment_status"]: r["count"]
            for r in latest.groupBy("enrichment_status").count().collect()
        }
        total = sum(counts.values())
        valid = sum(counts.get(s, 0) for s in PARSED)
        validity = valid / total if total else 1.0
        return AssetCheckResult(
            passed=validity >= config.min_validity,
            metadata={
                "validity": validity,
                "min_validity": config.min_validity,
                "status_counts": MetadataValue.json(counts),
            },
        )

    @asset_check(
        asset=enriched_key,
        blocking=True,
        description="Every CRITICAL anomaly has a valid explanation, or a later run will try "
        "again; fails for one whose runs are spent (enrichment max_runs).",
    )
    def critical_anomalies_explained(context, lakehouse: LakehouseResource):
        from pyspark.sql import functions as F

        df = written_rows(context, lakehouse, enriched_key)
        if df is None:
            return NOTHING
        unexplained = df.filter(
            (F.col("anomaly_status") == "CRITICAL")
            & ~F.col("enrichment_status").isin(*EXPLAINED)
        )
        final = unexplained.filter(~F.coalesce("will_retry", F.lit(False)))
        counts = unexplained.groupBy(
            F.coalesce("will_retry", F.lit(False)).alias("will_retry")
        ).count()
        n = {r["will_retry"]: r["count"] for r in counts.collect()}
        return AssetCheckResult(
            passed=n.get(False, 0) == 0,
            metadata={
                "unexplained_critical": n.get(False, 0),
                "awaiting_retry": n.get(True, 0),
                "sample": MetadataValue.json(
                    [
                        {"event_id": r[0], "status": r[1], "error": r[2]}
                        for r in final.select("event_id", "enrichment_status", "error")
                        .limit(10)
                        .collect()
                    ]
                ),
            },
        )

    @asset_check(
        op_tags=AFTER_ASSETS,
        asset=enriched_key,
        description="Explanations name only features that really drove "
        "the row's score (warns).",
    )
    def explanations_grounded(
        context, config: GroundednessConfig, lakehouse: LakehouseResource
    ):
        from pyspark.sql import functions as F

        df = written_rows(context, lakehouse, enriched_key)
        if df is None:
            return NOTHING
        df = df.filter(F.col("enrichment_status").isin(*PARSED))
        grounded = F.col("enrichment_status").isin(*EXPLAINED) & (
            F.size(F.array_except("top_factors", "top_features")) == 0
        )
        row = df.agg(
            F.count("*").alias("n"), F.sum(grounded.cast("int")).alias("g")
        ).first()
        share = (row["g"] or 0) / row["n"] if row["n"] else 1.0
        return AssetCheckResult(
            passed=share >= config.min_grounded,
            severity=AssetCheckSeverity.WARN,
            metadata={"grounded_share": share, "answered_rows": row["n"]},
        )

    return [
        enrichment_validity,
        critical_anomalies_explained,
        explanations_grounded,
    ]


ENRICHMENT_CHECKS = build_enrichment_checks()
