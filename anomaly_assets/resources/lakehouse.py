"""The lakehouse: where Delta tables live, and the Spark session that reads and writes them."""

from dagster import ConfigurableResource, ResourceDependency
from pydantic import Field

from anomaly_assets import settings
from anomaly_assets.core import cursors, delta_sql
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

    def under(self, *prefix: str) -> "LakehouseResource":
        """The same lakehouse seen from ``<root>/<prefix>``: a stream's tables and cursors."""
        if not prefix:
            return self
        return LakehouseResource(root=self.path(*prefix), spark=self.spark)

    def path(self, *key_path: str) -> str:
        return table_uri(self.root, key_path)

    def exists(self, *key_path: str) -> bool:
        return delta_sql.exists(self.spark_session, self.path(*key_path))

    def pending_changes(self, consumer: str, upstream: str, kinds=cursors.NEW_IMAGES):
        """The ``upstream`` table's commits ``consumer`` has not consumed (core/cursors.py):
        their rows of ``kinds``."""
        return cursors.pending_changes(
            self.spark_session,
            self.root,
            consumer,
            upstream,
            self.path(upstream),
            kinds,
        )

    def save_cursor(
        self, consumer: str, upstream: str, version: int, state: dict | None = None
    ) -> None:
        """Record that ``consumer`` consumed ``upstream`` through ``version``."""
        cursors.write_cursor(
            self.spark_session,
            self.root,
            cursors.Cursor(consumer, upstream, version, state or {}),
        )

    def read(self, *key_path: str):
        """The table as a DataFrame, or None if it was never written."""
        if not self.exists(*key_path):
            return None
        return self.spark_session.read.format("delta").load(self.path(*key_path))
