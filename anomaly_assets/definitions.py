"""The one place that builds the Definitions. Importing it starts no JVM, broker or MLflow."""

from dagster import Definitions, in_process_executor

from anomaly_assets.assets.bronze import bronze
from anomaly_assets.assets.silver import silver_events
from anomaly_assets.checks.ingestion import INGESTION_CHECKS
from anomaly_assets.io_managers import DeltaIOManager
from anomaly_assets.jobs import ingest_job
from anomaly_assets.resources import KafkaResource, SparkResource
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.sensors import kafka_offsets_sensor


def build_resources(spark: SparkResource | None = None, **overrides) -> dict:
    """Default resources; tests and benches swap pieces (a broker port, a lakehouse root)."""
    spark = spark or SparkResource()
    lakehouse = overrides.pop("lakehouse", None) or LakehouseResource(spark=spark)
    return {
        "spark": spark,
        "lakehouse": lakehouse,
        "io_manager": DeltaIOManager(lakehouse=lakehouse),
        "kafka": overrides.pop("kafka", None) or KafkaResource(),
        **overrides,
    }


def make_definitions(resources: dict) -> Definitions:
    return Definitions(
        assets=[bronze, silver_events],
        asset_checks=INGESTION_CHECKS,
        jobs=[ingest_job],
        sensors=[kafka_offsets_sensor],
        resources=resources,
        executor=in_process_executor,
    )


defs = make_definitions(build_resources())
