"""The Spark resource: a SparkSession configured for Delta, started on first use only.

Loading the definitions never starts a JVM (cheap imports for the UI and daemon): the session is built the
first time an asset or IO manager asks for ``spark_session`` inside a run. With ``remote``
set, the session is a Spark Connect session on a running server (a warm local one, a
shared cluster, Databricks) instead of a JVM of this process.
"""

import importlib.metadata
import logging
import os
import sys
from typing import Any
from urllib.parse import quote

from dagster import ConfigurableResource
from dagster_pyspark.resources import spark_session_from_config
from pydantic import Field, PrivateAttr

from anomaly_assets import settings
from anomaly_assets.core import spark_actions

SCALA_VERSION = "2.13"


def default_packages() -> list[str]:
    """Delta and the Kafka connector at the versions matching the installed Python packages."""
    spark = importlib.metadata.version("pyspark")
    delta = importlib.metadata.version("delta-spark")
    spark_minor = ".".join(spark.split(".")[:2])
    return [
        f"io.delta:delta-spark_{spark_minor}_{SCALA_VERSION}:{delta}",
        f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_VERSION}:{spark}",
    ]


def session_conf(shuffle_partitions: int) -> dict[str, str]:
    """Settings a session may change at run time: the ones a Spark Connect session sets on
    the server it attaches to (the server's own settings cover the rest)."""
    return {
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        # Delta rebuilds table state with 50 tasks by default: far too many for 2 cores.
        "spark.databricks.delta.snapshotPartitions": str(shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Downstream steps read only the commits they have not consumed (core/cursors.py).
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
    }


def connect_url(remote: str, token: str | None) -> str:
    """``remote`` with the bearer token added as a parameter (parameters follow "/;", are
    separated by ";" and URL-decoded by the client), so the token stays out of the
    configured URL."""
    if not token:
        return remote
    base = remote.rstrip("/;")
    return f"{base}{';' if '/;' in base else '/;'}token={quote(token, safe='')}"


#: Without these a run's results would differ (event hours in UTC) or its tables could not
#: be read incrementally (no Change Data Feed, not repairable in place), so a server that
#: refuses them fails the run; the others are tuning and only warn.
REQUIRED_SESSION_CONF = (
    "spark.sql.session.timeZone",
    "spark.databricks.delta.properties.defaults.enableChangeDataFeed",
)


def build_spark_conf(
    master: str,
    app_name: str,
    driver_memory: str,
    shuffle_partitions: int,
    packages: list[str],
    ivy_dir: str | None,
    driver_host: str | None,
    ui_enabled: bool,
    extra_conf: dict[str, str],
) -> dict[str, str]:
    """Spark settings for Delta sized for a small machine; ``extra_conf`` wins over all."""
    conf = {
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.driver.memory": driver_memory,
        "spark.default.parallelism": str(shuffle_partitions),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.ui.enabled": str(ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.pyspark.python": sys.executable,
        # Silver's features are a chain of per-user window operators. A user with more
        # rows in a batch than the window buffer holds (4,096) makes each operator spill
        # through a sorter that takes a whole memory page; at the default page size (a
        # sixteenth of a task's share, 32 MB with a 2 GB heap) the chain ran out of
        # execution memory on a 1,000,000-event batch (bench_ingest.py, a user with about
        # 32,000 events). 4 MB pages let every operator of the chain hold one.
        "spark.buffer.pageSize": "4m",
        **session_conf(shuffle_partitions),
    }
    if packages:
        conf["spark.jars.packages"] = ",".join(packages)
    if ivy_dir:
        conf["spark.jars.ivy"] = ivy_dir
    if driver_host:
        conf["spark.driver.host"] = driver_host
        conf["spark.driver.bindAddress"] = driver_host
    conf.update(extra_conf)
    return conf


class SparkResource(ConfigurableResource):
    """A lazily started SparkSession with Delta Lake and the Kafka connector.

    Defaults run on this machine (``local[*]``); point ``master`` at ``spark://host:7077``,
    ``k8s://...`` or a YARN cluster and set ``driver_host`` to an address the executors reach.
    Set ``remote`` to a Spark Connect URL to attach to a running server instead: each
    run (the project's jobs execute in one process) has its own server-side session, so
    concurrent runs on one server do not share temporary views, caches or settings; the
    session is released when the run ends.
    """

    remote: str | None = Field(
        default=settings.SPARK_REMOTE,
        description=(
            "Spark Connect URL, e.g. sc://127.0.0.1:15002 (env ANOMALY_SPARK_REMOTE). When "
            "set, master, packages, memory and the other JVM settings are the server's; "
            "keep secrets out of it (connect_token)."
        ),
    )
    connect_token: str | None = Field(
        default=None,
        description=(
            "Bearer token for the Spark Connect server (env ANOMALY_SPARK_CONNECT_TOKEN); "
            "implies TLS unless the host is localhost."
        ),
    )

    master: str = Field(
        default=settings.SPARK_MASTER,
        description="Spark master URL (env ANOMALY_SPARK_MASTER; default local[*]).",
    )
    app_name: str = Field(default="anomaly_assets")
    driver_memory: str = Field(
        default="2g", description="Driver JVM heap (local mode: all)."
    )
    shuffle_partitions: int = Field(
        default=4, description="Sized for 2 cores by default."
    )
    packages: list[str] = Field(
        default_factory=default_packages,
        description="Maven coordinates resolved by Spark (spark.jars.packages).",
    )
    ivy_dir: str | None = Field(
        default=str(settings.JAR_CACHE_DIR / "ivy"),
        description="Where Spark caches resolved packages.",
    )
    driver_host: str | None = Field(
        default="127.0.0.1",
        description="Address the driver binds to and advertises; None leaves Spark's default.",
    )
    ui_enabled: bool = Field(
        default=False, description="Start the Spark web UI (port 4040)."
    )
    log_level: str = Field(default="WARN")
    extra_conf: dict[str, str] = Field(
        default_factory=dict,
        description="Any other Spark setting; overrides the above.",
    )

    _session: Any = PrivateAttr(default=None)

    def spark_conf(self) -> dict[str, str]:
        # spark.log.level: the log level set at start-up, through configuration only
        return {"spark.log.level": self.log_level} | build_spark_conf(
            self.master,
            self.app_name,
            self.driver_memory,
            self.shuffle_partitions,
            self.packages,
            self.ivy_dir,
            self.driver_host,
            self.ui_enabled,
            self.extra_conf,
        )

    @property
    def spark_session(self):
        """The session, started on first access (reused if one is already active)."""
        if self._session is None or getattr(self._session, "is_stopped", False):
            spark_actions.install()
            self._session = self._connect() if self.remote else self._start_classic()
        return self._session

    def _start_classic(self):
        conf = self.spark_conf()
        # Python workers must run the interpreter that has this project's packages.
        os.environ.setdefault("PYSPARK_PYTHON", conf["spark.pyspark.python"])
        return spark_session_from_config(conf)

    def _connect(self):
        """This process's Spark Connect session, shared by every resource of the run
        (DataFrames of two sessions cannot be combined), with the run-time settings.
        pyspark then treats the process as a Connect client: a classic session cannot
        start in it any more, which a run never needs."""
        from pyspark.errors import PySparkException
        from pyspark.sql import SparkSession

        url = connect_url(self.remote, self.connect_token)
        session = SparkSession.builder.remote(url).getOrCreate()
        for key, value in session_conf(self.shuffle_partitions).items():
            try:
                session.conf.set(key, value)
            except PySparkException as exc:
                if key in REQUIRED_SESSION_CONF:
                    session.stop()
                    raise RuntimeError(
                        f"The Spark Connect server at {self.remote} refused {key}={value}, "
                        "which this project needs; allow it on the server."
                    ) from exc
                logging.getLogger(__name__).warning(
                    "Spark Connect server refused %s=%s (%s); using its default.",
                    key,
                    value,
                    type(exc).__name__,
                )
        return session

    def teardown_after_execution(self, context) -> None:
        """Release a Connect session on the server (its views, caches, checkpoints); a
        classic session stays for the process's next use."""
        if self.remote and self._session is not None:
            self._session.stop()
            self._session = None
