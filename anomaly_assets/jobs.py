"""Jobs. Spark-heavy steps run in one process so they share one SparkSession."""

from dagster import AssetSelection, define_asset_job, in_process_executor

INGESTION_TAGS = {"anomaly_assets/lane": "ingestion"}

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets(
        "bronze_events",
        "bronze_quarantine",
        "silver_events",
        "gold_anomaly_predictions",
        "gold_batch_drift",
        "gold_events_enriched",
        "llm_explanation_cache",
    ),
    executor_def=in_process_executor,
    tags=INGESTION_TAGS,
    description="One batch of Kafka offsets → bronze / quarantine → silver → gold scoring "
    "(the sensor's job).",
)

train_job = define_asset_job(
    "train_model_job",
    selection=AssetSelection.assets("anomaly_model"),
    executor_def=in_process_executor,
    # No end_mlflow_on_run_finished hook: anomaly_model ends its own MLflow run (FINISHED or
    # FAILED), which also covers "Materialize" from the UI, where job hooks do not apply, and
    # keeps mlflow out of the definitions' import.
    description="Train, track and register the Isolation Forest; the gate moves 'champion'.",
)
