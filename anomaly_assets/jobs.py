"""Jobs. Spark-heavy steps run in one process so they share one SparkSession."""

from dagster import AssetSelection, define_asset_job, in_process_executor

INGESTION_TAGS = {"anomaly_assets/lane": "ingestion"}

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets(
        "bronze_events", "bronze_quarantine", "silver_events"
    ),
    executor_def=in_process_executor,
    tags=INGESTION_TAGS,
    description="Kafka offsets of one batch → bronze_events / bronze_quarantine → silver_events.",
)
