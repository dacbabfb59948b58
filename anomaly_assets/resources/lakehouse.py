"""The lakehouse: where Delta tables live, and the Spark session that reads and writes them."""

from dagster import ConfigurableResource, ResourceDependency
from pydantic import Field

from anomaly_assets import settings
from anomaly_assets.resources.spark import SparkResource


def table_uri(root: str, key_path: list[str] | tuple[str, ...]) -> str:
    """``<root>/<key parts>``; object-store URIs (s3a://, abfss://) pass through unchanged."""
    return "/".join([root.rstrip("/"), *key_path])


class LakehouseResource(ConfigurableResource):
    """Table locations under one root, for the IO manager and for assets that read their own
    earlier state (silver's per-user history, for instance)."""

    root: str = Field(
        default=settings.LAKEHOUSE_ROOT,
        description="Lakehouse root: a local folder or an s3a:// / abfss:// URI.",
    )
    spark: ResourceDependency[SparkResource]

    @property
    def spark_session(self):
        return self.spark.spark_session

    def path(self, *key_path: str) -> str:
        return table_uri(self.root, key_path)

    def exists(self, *key_path: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark_session, self.path(*key_path))

    def read(self, *key_path: str):
        """The table as a DataFrame, or None if it was never written."""
        if not self.exists(*key_path):
            return None
        return self.spark_session.read.format("delta").load(self.path(*key_path))
