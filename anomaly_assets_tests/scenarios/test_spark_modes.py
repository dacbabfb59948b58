"""The same definitions in three Spark modes, configured by environment only: classic local
mode (this process), a standalone cluster (master + worker from pyspark's distribution) and
the warm Spark Connect server; each gives the same tables, and every table reads back with
the deltalake package."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import materialize
from deltalake import DeltaTable

from anomaly_assets.definitions import ASSETS, build_resources
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.devtools.spark_cluster import LocalSparkCluster
from anomaly_assets.devtools.spark_connect import (
    LocalSparkConnectServer,
    SparkConnectError,
)
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource
from anomaly_assets.resources.spark import connect_url
from anomaly_assets.silver.features import FEATURE_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
TO_GOLD = "bronze_events,bronze_quarantine,bronze_offset_ledger,silver_events,silver_user_profile,gold_anomaly_predictions,gold_batch_drift,gold_model_monitoring"
EVERY_ASSET = (
    f"{TO_GOLD},gold_user_incidents,gold_user_risk,gold_events_enriched,llm_explanation_cache,"
    "ai_enrichment_eval_metrics"
)


def rows(lake: Path, name: str, columns: list[str]) -> list[tuple]:
    table = DeltaTable(str(lake / name)).to_pyarrow_table(columns=columns)
    return sorted(tuple(r[c] for c in columns) for r in table.to_pylist())


@pytest.fixture(scope="module")
def local_run(kafka_broker, spark_resource, tmp_path_factory):
    """Events on a topic, every asset materialised in classic local mode: the reference."""
    base = tmp_path_factory.mktemp("modes")
    bootstrap, topic = kafka_broker.bootstrap_servers, "spark-modes"
    local_dir = base / "local"
    labels = local_dir / "labels.csv"
    produce(
        bootstrap,
        topic,
        3000,
        EventGenerator(seed=31, n_users=120, anomaly_rate=0.03, malformed_rate=0.01),
        labels,
        partitions=2,
    )
    mlflow_settings = MlflowResource(
        tracking_uri=f"sqlite:///{local_dir / 'mlflow.db'}",
        artifact_location=str(local_dir / "mlflow-artifacts"),
    )
    lake = base / "local_lake"
    resources = build_resources(
        spark_resource,
        kafka=KafkaResource(bootstrap_servers=bootstrap, topic=topic),
        lakehouse=LakehouseResource(root=str(lake), spark=spark_resource),
        mlflow_settings=mlflow_settings,
    )
    # The labels where the subprocess runs find them by default (ANOMALY_LOCAL_DIR).
    config = {
        "ops": {
            name: {"config": {"labels_path": str(labels)}}
            for name in ("anomaly_model", "ai_enrichment_eval_metrics")
        }
    }
    assert materialize(ASSETS, resources=resources, run_config=config).success
    return {
        "lake": lake,
        "local_dir": local_dir,
        "bootstrap": bootstrap,
        "topic": topic,
    }


def materialize_in_subprocess(local_run, lake: Path, home: Path, selection: str, **env):
    """``dagster asset materialize`` of the definitions, configured by environment only;
    the same MLflow store as the reference, so the same champion."""
    home.mkdir()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            *("asset", "materialize", "-m", "anomaly_assets.definitions"),
            *("--select", selection),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "ANOMALY_LAKEHOUSE_ROOT": str(lake),
            "ANOMALY_LOCAL_DIR": str(local_run["local_dir"]),
            "ANOMALY_KAFKA_BOOTSTRAP": local_run["bootstrap"],
            "ANOMALY_KAFKA_TOPIC": local_run["topic"],
            "DAGSTER_HOME": str(home),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def assert_same_tables_to_gold(want_lake: Path, got_lake: Path) -> None:
    for name, columns in [
        ("bronze_events", ["partition", "offset", "event_id", "batch_id"]),
        ("bronze_quarantine", ["partition", "offset", "reason"]),
        ("silver_events", ["event_id", "batch_id", *FEATURE_COLUMNS]),
    ]:
        want = rows(want_lake, name, columns)
        assert want and rows(got_lake, name, columns) == want, name

    scored = ["event_id", "model_version", "is_anomaly", "status", "anomaly_score"]
    want = rows(want_lake, "gold_anomaly_predictions", scored)
    got = rows(got_lake, "gold_anomaly_predictions", scored)
    assert len(got) == len(want) == len(rows(want_lake, "silver_events", ["event_id"]))
    assert any(r[2] for r in want), "some events must be anomalies"
    for g, w in zip(got, want, strict=True):
        assert g[:4] == w[:4] and math.isclose(g[4], w[4], rel_tol=1e-9), (g, w)


def test_bronze_to_gold_on_a_standalone_cluster_matches_local_mode(local_run, tmp_path):
    cluster_lake = tmp_path / "cluster_lake"
    with LocalSparkCluster(tmp_path / "spark", cores=2, memory="3g") as cluster:
        done = materialize_in_subprocess(
            local_run,
            cluster_lake,
            tmp_path / "dagster_home",
            TO_GOLD,
            ANOMALY_SPARK_MASTER=cluster.master_url,
            ANOMALY_SPARK_REMOTE="",
        )
        deadline = (
            time.monotonic() + 30
        )  # the master files the app once the driver leaves
        while not (apps := cluster.state()["completedapps"]):
            assert time.monotonic() < deadline, cluster.state()
            time.sleep(1)
    # the work ran on the cluster's executors, not in a local driver
    master_log = (tmp_path / "spark" / "master.log").read_text(errors="replace")
    assert [a["name"] for a in apps] == ["anomaly_assets"], (
        f"{apps}\n{master_log[-2000:]}\n{done.stderr[-3000:]}"
    )
    assert apps[0]["cores"] > 0

    assert_same_tables_to_gold(local_run["lake"], cluster_lake)


def test_every_asset_over_spark_connect_matches_local_mode(
    local_run, spark_connect_server, tmp_path
):
    connect_lake = tmp_path / "connect_lake"
    materialize_in_subprocess(
        local_run,
        connect_lake,
        tmp_path / "dagster_home",
        EVERY_ASSET,
        ANOMALY_SPARK_REMOTE=spark_connect_server.url,
        # Any classic session started by mistake would fail on this master.
        ANOMALY_SPARK_MASTER="spark://127.0.0.1:1",
    )
    local_lake = local_run["lake"]
    assert_same_tables_to_gold(local_lake, connect_lake)
    for name, columns in [
        (
            "gold_user_incidents",
            ["incident_id", "event_count", "event_ids", "status", "attack_techniques"],
        ),
        ("gold_user_risk", ["user_id", "risk_score", "risk_level", "as_of"]),
        (
            "gold_events_enriched",
            ["event_id", "enrichment_status", "risk_level", "summary", "top_factors"],
        ),
        (
            "ai_enrichment_eval_metrics",
            [
                "batch_id",
                "rows_enriched",
                "status_ok",
                "validity_pct",
                "flagged_recall",
            ],
        ),
    ]:
        want = rows(local_lake, name, columns)
        assert want and rows(connect_lake, name, columns) == want, name
    # Spark writes no type that other Delta readers refuse (a DDL schema parsed by the
    # Connect server would carry "string collate UTF8_BINARY").
    for log in connect_lake.glob("**/_delta_log/*.json"):
        assert "collate" not in log.read_text(), log


def test_connect_sessions_of_concurrent_runs_are_isolated(spark_connect_server):
    """Two runs on one server: the views and settings of one are not the other's; a run
    attaches with the project's settings and its end releases its session."""
    from pyspark.sql.connect.session import SparkSession

    first = SparkSession.builder.remote(spark_connect_server.url).create()
    second = SparkSession.builder.remote(spark_connect_server.url).create()
    try:
        first.range(3).createOrReplaceTempView("batch_source")
        first.conf.set("spark.sql.shuffle.partitions", "7")
        assert first.table("batch_source").count() == 3
        assert not second.catalog.tableExists("batch_source")
        assert second.conf.get("spark.sql.shuffle.partitions") != "7"
    finally:
        first.stop()
        second.stop()

    # A run's process is a Connect client only (pyspark refuses one next to this test
    # process's classic session), so the resource is tried in a process of its own.
    probe = subprocess.run(
        [sys.executable, "-c", ATTACH_PROBE, spark_connect_server.url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["count"] == 10
    assert seen["time_zone"] == "UTC" and seen["shuffle_partitions"] == "3"
    assert seen["stopped_after_run"] is True
    assert seen["attach_s"] < 10, f"attaching took {seen['attach_s']:.1f} s"


ATTACH_PROBE = """
import json, sys, time
from anomaly_assets.resources.spark import SparkResource

resource = SparkResource(remote=sys.argv[1], shuffle_partitions=3)
t0 = time.monotonic()
session = resource.spark_session
count = session.range(10).count()
attach_s = time.monotonic() - t0
seen = {
    "count": count,
    "attach_s": attach_s,
    "time_zone": session.conf.get("spark.sql.session.timeZone"),
    "shuffle_partitions": session.conf.get("spark.sql.shuffle.partitions"),
}
resource.teardown_after_execution(None)
print(json.dumps(seen | {"stopped_after_run": session.is_stopped}))
"""


def test_connect_server_start_is_idempotent_and_a_taken_port_is_refused(
    spark_connect_server, tmp_path
):
    pid = spark_connect_server.pid()
    t0 = time.monotonic()
    assert spark_connect_server.start() is spark_connect_server
    assert time.monotonic() - t0 < 5 and spark_connect_server.pid() == pid
    status = spark_connect_server.status()
    assert status["running"] and status["reachable"] and status["pid"] == pid

    port = spark_connect_server.port
    other = LocalSparkConnectServer(port=port, work_dir=tmp_path / "other")
    with pytest.raises(
        SparkConnectError, match=f"Port {port} on 127.0.0.1 is already in use"
    ):
        other.start()
    assert other.stop() is False and spark_connect_server.pid() == pid


@pytest.mark.parametrize(
    ("remote", "token", "url"),
    [
        ("sc://127.0.0.1:15002", None, "sc://127.0.0.1:15002"),
        ("sc://host:443", "s3cret", "sc://host:443/;token=s3cret"),
        ("sc://host:443/", "s3cret", "sc://host:443/;token=s3cret"),
        (
            "sc://host:443/;x-databricks-cluster-id=0123",
            "s3cret",
            "sc://host:443/;x-databricks-cluster-id=0123;token=s3cret",
        ),
        # a token with the separators of the connection string in it
        ("sc://host:443", "a=b;c%d/", "sc://host:443/;token=a%3Db%3Bc%25d%2F"),
    ],
)
def test_the_token_joins_the_connection_string_as_a_parameter(remote, token, url):
    from pyspark.sql.connect.client import DefaultChannelBuilder

    assert connect_url(remote, token) == url
    channel = DefaultChannelBuilder(url)
    assert channel.token == token and channel.secure == (token is not None)
