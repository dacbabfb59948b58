from anomaly_assets.resources.kafka import KafkaResource
from anomaly_assets.resources.spark import SparkResource

__all__ = ["KafkaResource", "SparkResource"]
