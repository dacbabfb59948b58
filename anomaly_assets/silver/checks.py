"""Checks of silver_events: every required and feature column there, no null, NaN or
infinite value and no duplicate event_id in what the latest write inserted or corrected,
answered in one query (see core/checks.py)."""

from dagster import AssetCheckSpec, MetadataValue, multi_asset_check

from anomaly_assets.core.checks import by_name, nothing_written, result, written_rows
from anomaly_assets.core.pruning import days_predicate, event_days
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.silver.features import REQUIRED_COLUMNS, stream_features
from anomaly_assets.stream import DEFAULT_STREAM, Stream


def not_finite(column: str):
    """True where a numeric column is null, NaN or ±Infinity."""
    from pyspark.sql import functions as F

    c = F.col(column)
    return c.isNull() | F.isnan(c) | (F.abs(c) == F.lit(float("inf")))


def silver_figures(written, silver, columns: list[str]) -> dict:
    """Null / non-finite counts of ``columns`` (required ones, then features) in the
    written rows, and the written event_ids stored twice (count and a sample), in one
    query. A row without an event time names no day to look in; its null is counted."""
    from pyspark.sql import functions as F

    nulls = written.select(
        *[
            F.sum(
                (F.col(c).isNull() if c in REQUIRED_COLUMNS else not_finite(c)).cast(
                    "long"
                )
            ).alias(c)
            for c in columns
        ],
    )
    days = event_days(written.filter(F.col("event_time").isNotNull()))
    same_days = silver.filter(days_predicate("event_time", days))
    dupes = (
        same_days.join(written.select("event_id").distinct(), "event_id")
        .groupBy("event_id")
        .count()
        .filter("count > 1")
        .agg(
            F.count("*").alias("_duplicates"),
            F.slice(F.collect_list("event_id"), 1, 10).alias("_sample"),
        )
    )
    row = nulls.crossJoin(dupes).first().asDict()
    return {
        "nulls": {c: row[c] for c in columns if row[c]},
        "duplicates": row["_duplicates"],
        "sample": row["_sample"],
    }


def build_silver_checks(stream: Stream = DEFAULT_STREAM) -> list:
    """The checks of ``stream``'s silver_events."""
    silver_key = stream.key("silver_events")
    silver = by_name(
        AssetCheckSpec(
            "silver_schema_not_null",
            asset=silver_key,
            blocking=True,
            description="Silver has every required and feature column; the rows the "
            "latest write inserted or corrected have no null in required columns and "
            "no null, NaN or infinite feature.",
        ),
        AssetCheckSpec(
            "silver_unique_event_id",
            asset=silver_key,
            blocking=True,
            description="No event_id the latest write inserted appears twice in "
            "silver (looked up on the written rows' event days: a redelivered event "
            "keeps its event time).",
        ),
    )

    @multi_asset_check(
        specs=list(silver.values()),
        name=stream.named("silver_events_checks"),
        description="The rows the latest silver write inserted or corrected, in one query.",
    )
    def silver_checks(context, lakehouse: LakehouseResource):
        table = stream.lakehouse(lakehouse).read("silver_events")
        expected = (*REQUIRED_COLUMNS, *stream_features(stream))
        missing = [c for c in expected if c not in table.columns]
        written = written_rows(context, lakehouse, silver_key)
        if written is None and not missing:
            yield from nothing_written(*silver.values())
            return
        present = [c for c in expected if c in table.columns]
        figures = (
            {"nulls": {}, "duplicates": 0, "sample": []}
            if written is None
            else silver_figures(written, table, present)
        )
        yield result(
            silver["silver_schema_not_null"],
            not missing and not figures["nulls"],
            {
                "missing_columns": MetadataValue.json(missing),
                "null_or_non_finite_counts": MetadataValue.json(figures["nulls"]),
            },
        )
        yield result(
            silver["silver_unique_event_id"],
            figures["duplicates"] == 0,
            {
                "duplicate_event_ids": figures["duplicates"],
                "sample": MetadataValue.json(figures["sample"]),
            },
        )

    return [silver_checks]
