"""The one place that builds the Definitions. Importing it starts no JVM, broker or MLflow."""

import os

from dagster import Definitions, EnvVar, in_process_executor

from anomaly_assets.assets.bronze import bronze
from anomaly_assets.assets.enrichment import enrichment
from anomaly_assets.assets.evaluation import ai_enrichment_eval_metrics
from anomaly_assets.assets.gold import gold
from anomaly_assets.assets.incidents import gold_user_incidents
from anomaly_assets.assets.model import anomaly_model
from anomaly_assets.assets.silver import silver
from anomaly_assets.checks.enrichment import ENRICHMENT_CHECKS
from anomaly_assets.checks.evaluation import EVALUATION_CHECKS
from anomaly_assets.checks.gold import GOLD_CHECKS
from anomaly_assets.checks.incidents import INCIDENT_CHECKS
from anomaly_assets.checks.ingestion import INGESTION_CHECKS
from anomaly_assets.io_managers import DeltaIOManager
from anomaly_assets.jobs import (
    ingest_and_train_job,
    ingest_job,
    prompt_comparison_job,
    train_job,
)
from anomaly_assets.maintenance import optimize_tables_job, optimize_tables_schedule
from anomaly_assets.resources import KafkaResource, SparkResource
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.llm import llm_from_env
from anomaly_assets.resources.mlflow import MlflowResource, MlflowTracking
from anomaly_assets.sensors import kafka_offsets_sensor


def build_resources(spark: SparkResource | None = None, **overrides) -> dict:
    """Default resources; tests and benches swap pieces (a broker port, a lakehouse root)."""
    spark = spark or SparkResource(
        # An EnvVar, so the token is read in the run and never shown as config in the UI.
        connect_token=EnvVar("ANOMALY_SPARK_CONNECT_TOKEN")
        if os.environ.get("ANOMALY_SPARK_CONNECT_TOKEN")
        else None
    )
    lakehouse = overrides.pop("lakehouse", None) or LakehouseResource(spark=spark)
    mlflow_settings = overrides.pop("mlflow_settings", None) or MlflowResource()
    return {
        "spark": spark,
        "lakehouse": lakehouse,
        "io_manager": DeltaIOManager(lakehouse=lakehouse),
        "kafka": overrides.pop("kafka", None) or KafkaResource(),
        "mlflow_settings": mlflow_settings,
        "mlflow_tracking": MlflowTracking(mlflow_settings=mlflow_settings),
        "llm": overrides.pop("llm", None) or llm_from_env(),
        **overrides,
    }


#: Every asset of the pipeline, upstream first.
ASSETS = [
    bronze,
    silver,
    anomaly_model,
    gold,
    gold_user_incidents,
    enrichment,
    ai_enrichment_eval_metrics,
]
#: Every asset check, in the same order.
CHECKS = [
    *INGESTION_CHECKS,
    *GOLD_CHECKS,
    *INCIDENT_CHECKS,
    *ENRICHMENT_CHECKS,
    *EVALUATION_CHECKS,
]


def make_definitions(resources: dict) -> Definitions:
    return Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[
            ingest_job,
            ingest_and_train_job,
            train_job,
            prompt_comparison_job,
            optimize_tables_job,
        ],
        schedules=[optimize_tables_schedule],
        sensors=[kafka_offsets_sensor],
        resources=resources,
        executor=in_process_executor,
    )


defs = make_definitions(build_resources())
