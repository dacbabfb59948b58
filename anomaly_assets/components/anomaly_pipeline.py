"""The anomaly pipeline as a Dagster component: one ``defs.yaml`` per stream.

``attributes`` are a ``StreamSpec`` (components/spec.py), validated strictly and item by
item, so every mistake fails loading with the file, the line and the field (a feature the
contract cannot feed: that feature's own line).

The instance builds the stream's assets, checks, jobs, sensor and maintenance under its key
prefix (pipeline.py); resources (Spark, lakehouse, Kafka connection, MLflow, LLM) are the
project's, shared by every stream.
"""

import dagster as dg

from anomaly_assets.components.spec import StreamSpec
from anomaly_assets.pipeline import stream_definitions


class AnomalyPipeline(dg.Component):
    """One stream of user-activity events, Kafka to explained and evaluated anomalies."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec

    @classmethod
    def get_model_cls(cls):
        return StreamSpec

    @classmethod
    def load(cls, attributes: StreamSpec, context: dg.ComponentLoadContext):
        return cls(attributes)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return stream_definitions(self.spec.to_stream())
