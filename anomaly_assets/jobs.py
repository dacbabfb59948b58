"""Jobs. Spark-heavy steps run in one process so they share one SparkSession."""

from dagster import AssetSelection, define_asset_job, in_process_executor

INGESTION_TAGS = {"anomaly_assets/lane": "ingestion"}

INGESTION_ASSETS = (
    "bronze_events",
    "bronze_quarantine",
    "bronze_offset_ledger",
    "silver_events",
    "silver_user_profile",
    "gold_anomaly_predictions",
    "gold_batch_drift",
    "gold_model_monitoring",
    "gold_user_incidents",
    "gold_events_enriched",
    "llm_explanation_cache",
    "ai_enrichment_eval_metrics",
)

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets(*INGESTION_ASSETS),
    executor_def=in_process_executor,
    tags=INGESTION_TAGS,
    description="One batch of Kafka offsets → bronze / quarantine → silver → gold scoring → "
    "user incidents and LLM enrichment → evaluation (the sensor's job).",
)

#: The sensor's job while no model exists yet, so a fresh deployment needs no manual step.
ingest_and_train_job = define_asset_job(
    "ingest_and_train_job",
    selection=AssetSelection.assets(*INGESTION_ASSETS, "anomaly_model"),
    executor_def=in_process_executor,
    tags=INGESTION_TAGS,
    description="ingest_job with anomaly_model trained on the batch's silver rows before "
    "scoring: what the sensor runs on a cold start (no anomaly_model materialisation yet).",
)

#: Compares two prompts on the latest enriched batch; edit the prompt names in the launchpad.
prompt_comparison_job = define_asset_job(
    "prompt_comparison_job",
    selection=AssetSelection.assets("ai_enrichment_eval_metrics"),
    executor_def=in_process_executor,
    config={
        "ops": {
            "ai_enrichment_eval_metrics": {
                "config": {
                    "compare_prompts": ["explain_anomalies_v1", "explain_anomalies_v2"]
                }
            }
        }
    },
    description="Explain the latest enriched batch once per prompt and write one comparison "
    "row each to ai_enrichment_eval_metrics (and MLflow).",
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
