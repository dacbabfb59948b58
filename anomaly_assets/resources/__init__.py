"""Resources every layer shares: Spark, the lakehouse, MLflow. A layer's own resource lives
in its folder (Kafka in ingestion/, the LLM in enrichment/)."""

from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource
from anomaly_assets.resources.spark import SparkResource

__all__ = ["LakehouseResource", "MlflowResource", "SparkResource"]
