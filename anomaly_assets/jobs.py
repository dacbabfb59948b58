"""Jobs. Spark-heavy steps run in one process so they share one SparkSession."""

from dataclasses import dataclass
from typing import Any

from dagster import AssetSelection, define_asset_job, in_process_executor

from anomaly_assets.stream import DEFAULT_STREAM, Stream

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
    "gold_user_risk",
    "gold_events_enriched",
    "llm_explanation_cache",
    "ai_enrichment_eval_metrics",
    "alert_outbox",
)


@dataclass(frozen=True)
class StreamJobs:
    """A stream's asset jobs (define_asset_job's results)."""

    ingest: Any
    ingest_and_train: Any
    train: Any
    prompt_comparison: Any

    def __iter__(self):
        return iter(
            (self.ingest, self.ingest_and_train, self.train, self.prompt_comparison)
        )


def build_jobs(stream: Stream = DEFAULT_STREAM) -> StreamJobs:
    """``stream``'s jobs; the default stream's keep their names (ingest_job, ...)."""
    ingestion = [stream.key(name) for name in INGESTION_ASSETS]
    eval_op = stream.key("ai_enrichment_eval_metrics").to_python_identifier()
    return StreamJobs(
        ingest=define_asset_job(
            stream.named("ingest_job"),
            selection=AssetSelection.assets(*ingestion),
            executor_def=in_process_executor,
            tags=stream.lane,
            description="One batch of Kafka offsets → bronze / quarantine → silver → gold "
            "scoring → user incidents and risk, and LLM enrichment → evaluation and alerts (the sensor's job).",
        ),
        # The sensor's job while no model exists yet: a fresh deployment needs no manual step.
        ingest_and_train=define_asset_job(
            stream.named("ingest_and_train_job"),
            selection=AssetSelection.assets(*ingestion, stream.key("anomaly_model")),
            executor_def=in_process_executor,
            tags=stream.lane,
            description="ingest_job with anomaly_model trained on the batch's silver rows "
            "before scoring: what the sensor runs on a cold start (no anomaly_model "
            "materialisation yet).",
        ),
        train=define_asset_job(
            stream.named("train_model_job"),
            selection=AssetSelection.assets(stream.key("anomaly_model")),
            executor_def=in_process_executor,
            # No end_mlflow_on_run_finished hook: anomaly_model ends its own MLflow run
            # (FINISHED or FAILED), which also covers "Materialize" from the UI, where job
            # hooks do not apply, and keeps mlflow out of the definitions' import.
            description="Train, track and register the threat forests; the gate moves "
            "'champion'.",
        ),
        # Compares two prompts on the latest enriched batch; edit the names in the launchpad.
        prompt_comparison=define_asset_job(
            stream.named("prompt_comparison_job"),
            selection=AssetSelection.assets(stream.key("ai_enrichment_eval_metrics")),
            executor_def=in_process_executor,
            config={
                "ops": {
                    eval_op: {
                        "config": {
                            "compare_prompts": [
                                "explain_anomalies_v1",
                                "explain_anomalies_v2",
                            ]
                        }
                    }
                }
            },
            description="Explain the latest enriched batch once per prompt and write one "
            "comparison row each to ai_enrichment_eval_metrics (and MLflow).",
        ),
    )
