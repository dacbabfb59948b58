"""silver_events: typed, deduplicated events with per-user behaviour features.

Incremental by batch: each run takes the bronze batches silver has not seen yet and
MERGEs their rows on event_id (insert only), so an event delivered again in a later
batch stays out and a re-run adds nothing.
"""

from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output, asset

from anomaly_assets.assets.lineage import column_lineage
from anomaly_assets.lib.batches import pending_batch_ids
from anomaly_assets.lib.bronze import BRONZE_COLUMNS
from anomaly_assets.lib.features import EVENT_COLUMNS, FEATURES, silver_rows
from anomaly_assets.resources.lakehouse import LakehouseResource

#: Carried columns keep their bronze name, except event_time (parsed from event_ts).
LINEAGE = column_lineage(
    "bronze_events",
    [c for c in EVENT_COLUMNS if c in BRONZE_COLUMNS],
    {"event_time": ["event_ts"]},
)


@asset(
    ins={"bronze_events": AssetIn()},
    description="Typed events deduplicated by event_id, timestamps in UTC, and the model's "
    "per-user behaviour features over event-time windows that span batches.",
    group_name="silver",
    kinds={"spark", "delta"},
    metadata={"delta/write_mode": "merge_insert", "delta/merge_keys": ["event_id"]},
    tags={"layer": "silver"},
    owners=["team:data-platform"],
    pool="anomaly_assets/silver_events",
)
def silver_events(
    context: AssetExecutionContext, bronze_events, lakehouse: LakehouseResource
) -> Output:
    history = lakehouse.read("silver_events")
    batches = pending_batch_ids(bronze_events, history)
    context.log.info(f"Silver: {len(batches)} new bronze batch(es): {batches[:10]}")
    new = bronze_events.filter(bronze_events.batch_id.isin(batches))
    rows = silver_rows(new, history)
    return Output(
        rows,
        metadata={
            "batches": MetadataValue.json(batches),
            "features": MetadataValue.md(
                "\n".join(f"- `{name}`: {doc}" for name, doc in FEATURES.items())
            ),
            **LINEAGE,
        },
    )
