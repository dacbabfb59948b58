"""Shared, expensive fixtures: one real Kafka broker and one SparkSession per test session."""

import itertools
import os
import shutil
import tempfile

# Before anything imports anomaly_assets.settings: tests never write into the checkout.
_SANDBOX = tempfile.mkdtemp(prefix="anomaly_assets_tests_")
os.environ["ANOMALY_LAKEHOUSE_ROOT"] = os.path.join(_SANDBOX, "lakehouse")
os.environ["ANOMALY_LOCAL_DIR"] = os.path.join(_SANDBOX, "local")
os.environ.setdefault("ANOMALY_SENSOR_INTERVAL_S", "5")

from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
from anomaly_assets.devtools.spark_connect import LocalSparkConnectServer
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.io_managers.delta import write_delta
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource
from anomaly_assets.resources.spark import SparkResource
from anomaly_assets_tests.helpers import GOLD_SCHEMA, SILVER_SCHEMA, hand_made_batch

_topics = itertools.count()

#: No hypothesis deadline: on 2 busy cores an example's time says nothing about the code,
#: and no property here is about time.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

#: Modules that take minutes, slowest first (seconds in a serial run). ``make test`` runs
#: the suite on two workers that take whole modules in collection order (pytest-xdist
#: ``--dist loadfile --no-loadscope-reorder``): started first, the long ones run beside
#: the many short ones instead of leaving one worker alone at the end.
SLOW_MODULES = (
    "scenarios/test_daemon.py",  # 590
    "scenarios/test_ui.py",  # 500
    "scenarios/test_spark_modes.py",  # 400
    "silver/test_hostile_features.py",  # 350
    "scenarios/test_late_replay.py",  # 210
    "silver/test_features.py",  # 160
    "scenarios/test_second_stream.py",  # 150
    "scenarios/test_hostile_batch.py",  # 140
    "ingestion/test_assets.py",  # 140
    "io_managers/test_delta.py",  # 130
    "gold/test_assets.py",  # 90
    "scenarios/test_ui_streams.py",  # 60
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_MODULES)}
    here = Path(__file__).parent
    items.sort(
        key=lambda item: rank.get(item.path.relative_to(here).as_posix(), len(rank))
    )


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    broker = LocalKafkaBroker(
        port=free_port(),
        controller_port=free_port(),
        data_dir=tmp_path_factory.mktemp("kafka"),
        # Retention and compaction happen within seconds, so tests can watch them.
        extra_props={
            "log.retention.check.interval.ms": "1000",
            "log.cleaner.backoff.ms": "500",
            "log.initial.task.delay.ms": "0",
        },
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def topic(kafka_broker, request) -> str:
    """A fresh topic name per test (created by whoever produces first)."""
    return (
        f"t{next(_topics)}-{request.node.name[:40].replace('[', '-').replace(']', '')}"
    )


@pytest.fixture(scope="session")
def spark_resource() -> SparkResource:
    return SparkResource(
        remote=None, shuffle_partitions=2, driver_memory="2g", log_level="ERROR"
    )


@pytest.fixture(scope="session")
def spark_connect_server(tmp_path_factory):
    """The warm Spark Connect server ``make dev`` runs, on a free port."""
    server = LocalSparkConnectServer(
        port=free_port(),
        work_dir=tmp_path_factory.mktemp("spark_connect"),
        driver_memory="3g",
        spark=SparkResource(shuffle_partitions=2, log_level="ERROR"),
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def spark(spark_resource):
    session = spark_resource.spark_session
    yield session
    session.stop()


@pytest.fixture
def lakehouse(spark_resource, spark, tmp_path) -> LakehouseResource:
    return LakehouseResource(root=str(tmp_path / "lake"), spark=spark_resource)


@pytest.fixture
def kafka(kafka_broker, topic) -> KafkaResource:
    return KafkaResource(bootstrap_servers=kafka_broker.bootstrap_servers, topic=topic)


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory):
    """An MLflow sqlite store as MLflow creates it (tables, default experiment), made once:
    a new file costs seconds of schema migrations, a copy of this one none."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow_store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_settings(tmp_path, empty_mlflow_store) -> MlflowResource:
    """MLflow on a fresh sqlite store per test (a copy of an empty one)."""
    shutil.copyfile(empty_mlflow_store, tmp_path / "mlflow.db")
    return MlflowResource(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=str(tmp_path / "mlartifacts"),
    )


@pytest.fixture
def lake(spark, lakehouse):
    """Adds a batch of hand-made gold + silver rows to the test lakehouse."""

    def add(batch, n_stuffing, n_exfil, start=0):
        gold, silver = hand_made_batch(batch, n_stuffing, n_exfil, start)
        write_delta(
            spark.createDataFrame(gold, GOLD_SCHEMA),
            lakehouse.path("gold_anomaly_predictions"),
            "append",
        )
        write_delta(
            spark.createDataFrame(silver, SILVER_SCHEMA),
            lakehouse.path("silver_events"),
            "append",
        )

    return add
