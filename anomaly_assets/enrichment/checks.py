"""Checks of gold_events_enriched: validity, CRITICAL coverage, groundedness.

One op evaluates the rows the latest enrichment wrote (see core/checks.py), counted in one
query by status, severity, retry and groundedness."""

from dagster import AssetCheckSpec, Config, MetadataValue, multi_asset_check
from pydantic import Field

from anomaly_assets.core.checks import by_name, nothing_written, result, written_rows
from anomaly_assets.enrichment.statuses import EXPLAINED, PARSED
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


class EnrichmentChecksConfig(Config):
    min_validity: float = Field(
        default=0.9,
        description="Least share of attempted rows whose answer parsed into the "
        "schema, after re-asks (ungrounded answers count: groundedness is its own check).",
    )
    min_grounded: float = Field(
        default=0.9,
        description="Least share of answers (rows whose answer parsed) that passed the "
        "evidence checks and name only the row's real top contributors.",
    )


def enrichment_counts(enriched) -> list[dict]:
    """Rows counted by (enrichment_status, critical, will_retry, grounded)."""
    from pyspark.sql import functions as F

    grounded = F.col("enrichment_status").isin(*EXPLAINED) & (
        F.size(F.array_except("top_factors", "top_features")) == 0
    )
    rows = (
        enriched.groupBy(
            "enrichment_status",
            (F.col("anomaly_status") == "CRITICAL").alias("critical"),
            F.coalesce("will_retry", F.lit(False)).alias("will_retry"),
            F.coalesce(grounded, F.lit(False)).alias("grounded"),
        )
        .count()
        .collect()
    )
    return [r.asDict() for r in rows]


def enrichment_results(
    specs: dict, counts: list[dict], config: EnrichmentChecksConfig
) -> list:
    counts = [c for c in counts if c["enrichment_status"] is not None]
    by_status: dict[str, int] = {}
    for c in counts:
        if c["enrichment_status"] != "skipped_budget":
            by_status[c["enrichment_status"]] = (
                by_status.get(c["enrichment_status"], 0) + c["count"]
            )
    attempted = sum(by_status.values())
    validity = (
        sum(by_status.get(s, 0) for s in PARSED) / attempted if attempted else 1.0
    )
    unexplained = {True: 0, False: 0}
    for c in counts:
        if c["critical"] and c["enrichment_status"] not in EXPLAINED:
            unexplained[c["will_retry"]] += c["count"]
    answered = [c for c in counts if c["enrichment_status"] in PARSED]
    n = sum(c["count"] for c in answered)
    share = sum(c["count"] for c in answered if c["grounded"]) / n if n else 1.0
    return [
        result(
            specs["enrichment_validity"],
            validity >= config.min_validity,
            {
                "validity": validity,
                "min_validity": config.min_validity,
                "status_counts": MetadataValue.json(by_status),
            },
        ),
        result(
            specs["critical_anomalies_explained"],
            unexplained[False] == 0,
            {
                "unexplained_critical": unexplained[False],
                "awaiting_retry": unexplained[True],
            },
        ),
        result(
            specs["explanations_grounded"],
            share >= config.min_grounded,
            {"grounded_share": share, "answered_rows": n},
        ),
    ]


def unexplained_sample(enriched, n: int = 10) -> list[dict]:
    """A few CRITICAL rows whose runs are spent, for the failed check's metadata."""
    from pyspark.sql import functions as F

    rows = (
        enriched.filter(
            (F.col("anomaly_status") == "CRITICAL")
            & ~F.col("enrichment_status").isin(*EXPLAINED)
            & ~F.coalesce("will_retry", F.lit(False))
        )
        .select("event_id", "enrichment_status", "error")
        .limit(n)
        .collect()
    )
    return [{"event_id": r[0], "status": r[1], "error": r[2]} for r in rows]


def build_enrichment_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s gold_events_enriched."""
    enriched_key = stream.key("gold_events_enriched")
    specs = by_name(
        AssetCheckSpec(
            "enrichment_validity",
            asset=enriched_key,
            blocking=True,
            description="Share of the latest run's anomalies (budget skips aside) "
            "whose answer passed Pydantic validation is at least min_validity.",
        ),
        AssetCheckSpec(
            "critical_anomalies_explained",
            asset=enriched_key,
            blocking=True,
            description="Every CRITICAL anomaly has a valid explanation, or a later "
            "run will try again; fails for one whose runs are spent (enrichment "
            "max_runs).",
        ),
        AssetCheckSpec(
            "explanations_grounded",
            asset=enriched_key,
            description="Explanations name only features that really drove the row's "
            "score (warns).",
        ),
    )

    @multi_asset_check(
        specs=list(specs.values()),
        name=stream.named("gold_events_enriched_checks"),
        description="The rows the latest enrichment wrote, in one query.",
    )
    def enrichment_checks(
        context, config: EnrichmentChecksConfig, lakehouse: LakehouseResource
    ):
        enriched = written_rows(context, lakehouse, enriched_key)
        if enriched is None:
            yield from nothing_written(*specs.values())
            return
        for r in enrichment_results(specs, enrichment_counts(enriched), config):
            if r.check_name == "critical_anomalies_explained" and not r.passed:
                r = r.with_metadata(
                    {
                        **r.metadata,
                        "sample": MetadataValue.json(unexplained_sample(enriched)),
                    }
                )
            yield r

    return [enrichment_checks]


ENRICHMENT_CHECKS = build_enrichment_checks()
