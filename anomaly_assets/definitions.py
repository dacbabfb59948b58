"""The one place that builds the project's Definitions: the default stream, the streams
declared under defs/ (each an AnomalyPipeline component, built by pipeline.py like the
default one) and the resources they share. Importing it starts no JVM, broker or MLflow."""

import os
from pathlib import Path

from dagster import (
    AssetsDefinition,
    Definitions,
    EnvVar,
    in_process_executor,
    load_from_defs_folder,
)

from anomaly_assets.enrichment.resource import llm_from_env
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.io_managers import DeltaIOManager
from anomaly_assets.pipeline import stream_parts
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource, MlflowTracking
from anomaly_assets.resources.spark import SparkResource
from anomaly_assets.stream import DEFAULT_STREAM


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


#: The default stream: today's asset names, the kafka resource's topic.
DEFAULT_PIPELINE = stream_parts(DEFAULT_STREAM)
#: Every asset a step of the default pipeline writes, upstream first (not analyst_feedback:
#: the triage page writes it).
ASSETS = [a for a in DEFAULT_PIPELINE["assets"] if isinstance(a, AssetsDefinition)]
#: Every asset check, in the same order.
CHECKS = DEFAULT_PIPELINE["asset_checks"]


def make_definitions(
    resources: dict, streams: Definitions | None = None
) -> Definitions:
    """The default pipeline, the streams declared in defs.yaml files, shared resources."""
    default = Definitions(
        **DEFAULT_PIPELINE, resources=resources, executor=in_process_executor
    )
    return Definitions.merge(default, streams) if streams else default


def declared_streams() -> Definitions:
    """One AnomalyPipeline per ``defs.yaml`` under anomaly_assets/defs/."""
    return load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")


defs = make_definitions(build_resources(), declared_streams())
