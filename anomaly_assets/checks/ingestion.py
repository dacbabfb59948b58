"""Asset checks on bronze and silver: offsets accounted for, quarantine share, silver shape."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    Config,
    MetadataValue,
    asset_check,
)
from pydantic import Field

from anomaly_assets.lib.features import FEATURE_COLUMNS, REQUIRED_COLUMNS
from anomaly_assets.resources.lakehouse import LakehouseResource


def offset_gaps(bronze, quarantine):
    """Per (batch, topic, partition) in bronze ∪ quarantine: rows, distinct offsets, span.

    Contiguous means rows == distinct == max - min + 1 for every group.
    """
    from pyspark.sql import functions as F

    cols = ["batch_id", "topic", "partition", "offset"]
    both = bronze.select(*cols)
    if quarantine is not None:
        both = both.unionByName(quarantine.select(*cols))
    return (
        both.groupBy("batch_id", "topic", "partition")
        .agg(
            F.count("*").alias("rows"),
            F.countDistinct("offset").alias("distinct_offsets"),
            (F.max("offset") - F.min("offset") + 1).alias("span"),
        )
        .filter("rows != span OR distinct_offsets != rows")
    )


@asset_check(
    asset=AssetKey("bronze_events"),
    blocking=True,
    description="Within every batch and partition, bronze and quarantine together hold "
    "each offset once with no gap.",
)
def bronze_offsets_contiguous(lakehouse: LakehouseResource) -> AssetCheckResult:
    bad = offset_gaps(
        lakehouse.read("bronze_events"), lakehouse.read("bronze_quarantine")
    )
    rows = [r.asDict() for r in bad.limit(20).collect()]
    return AssetCheckResult(
        passed=not rows, metadata={"bad_groups": MetadataValue.json(rows)}
    )


class QuarantineRatioConfig(Config):
    max_ratio: float = Field(
        default=0.05, description="Warn above this quarantined share."
    )


def quarantine_ratio(
    bronze, quarantine, batch_id: str | None = None
) -> tuple[int, int]:
    """(quarantined, total) for one batch, or for all batches."""

    def n(df):
        if df is None:
            return 0
        return (df if batch_id is None else df.filter(df.batch_id == batch_id)).count()

    bad = n(quarantine)
    return bad, bad + n(bronze)


@asset_check(
    asset=AssetKey("bronze_quarantine"),
    description="Share of messages quarantined in the latest batch stays under a "
    "threshold (warns).",
)
def quarantine_ratio_check(
    context, config: QuarantineRatioConfig, lakehouse: LakehouseResource
) -> AssetCheckResult:
    from pyspark.sql import functions as F

    quarantine = lakehouse.read("bronze_quarantine")
    bronze = lakehouse.read("bronze_events")
    stamps = bronze.select("batch_id", "ingested_at")
    if quarantine is not None:
        stamps = stamps.unionByName(quarantine.select("batch_id", "ingested_at"))
    latest = stamps.orderBy(F.col("ingested_at").desc()).select("batch_id").first()
    batch = latest[0] if latest else None
    bad, total = quarantine_ratio(bronze, quarantine, batch)
    ratio = bad / total if total else 0.0
    return AssetCheckResult(
        passed=ratio <= config.max_ratio,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "batch_id": batch or "",
            "quarantined": bad,
            "total": total,
            "ratio": ratio,
            "max_ratio": config.max_ratio,
        },
    )


def not_finite(column: str):
    """True where a numeric column is null, NaN or ±Infinity."""
    from pyspark.sql import functions as F

    c = F.col(column)
    return c.isNull() | F.isnan(c) | (F.abs(c) == F.lit(float("inf")))


@asset_check(
    asset=AssetKey("silver_events"),
    blocking=True,
    description="Silver has every required and feature column, with no nulls in "
    "required columns and no null, NaN or infinite feature.",
)
def silver_schema_not_null(lakehouse: LakehouseResource) -> AssetCheckResult:
    from pyspark.sql import functions as F

    silver = lakehouse.read("silver_events")
    missing = [
        c for c in (*REQUIRED_COLUMNS, *FEATURE_COLUMNS) if c not in silver.columns
    ]
    nulls = {}
    if not missing:
        row = silver.select(
            *[F.sum(F.col(c).isNull().cast("long")).alias(c) for c in REQUIRED_COLUMNS],
            *[F.sum(not_finite(c).cast("long")).alias(c) for c in FEATURE_COLUMNS],
        ).first()
        nulls = {c: row[c] for c in row.asDict() if row[c]}
    return AssetCheckResult(
        passed=not missing and not nulls,
        metadata={
            "missing_columns": MetadataValue.json(missing),
            "null_or_non_finite_counts": MetadataValue.json(nulls),
        },
    )


@asset_check(
    asset=AssetKey("silver_events"),
    blocking=True,
    description="No event_id appears twice in silver.",
)
def silver_unique_event_id(lakehouse: LakehouseResource) -> AssetCheckResult:
    silver = lakehouse.read("silver_events")
    dupes = silver.groupBy("event_id").count().filter("count > 1")
    n = dupes.count()
    sample = [r[0] for r in dupes.limit(10).collect()]
    return AssetCheckResult(
        passed=n == 0,
        metadata={"duplicate_event_ids": n, "sample": MetadataValue.json(sample)},
    )


INGESTION_CHECKS = [
    bronze_offsets_contiguous,
    quarantine_ratio_check,
    silver_schema_not_null,
    silver_unique_event_id,
]
