"""bronze → gold on a Spark standalone cluster (master + worker from pyspark's distribution),
configured by environment only, gives the same tables as local mode."""

import math
import os
import subprocess
import sys
import time
from pathlib import Path

from dagster import materialize
from deltalake import DeltaTable

from anomaly_assets.assets.bronze import bronze
from anomaly_assets.assets.gold import gold
from anomaly_assets.assets.model import anomaly_model
from anomaly_assets.assets.silver import silver
from anomaly_assets.definitions import build_resources
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.devtools.spark_cluster import LocalSparkCluster
from anomaly_assets.lib.features import FEATURE_COLUMNS
from anomaly_assets.resources import KafkaResource
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource

ROOT = Path(__file__).resolve().parents[1]
TO_GOLD = "bronze_events,bronze_quarantine,bronze_offset_ledger,silver_events,silver_user_profile,gold_anomaly_predictions,gold_batch_drift"


def rows(lake: Path, name: str, columns: list[str]) -> list[tuple]:
    table = DeltaTable(str(lake / name)).to_pyarrow_table(columns=columns)
    return sorted(tuple(r[c] for c in columns) for r in table.to_pylist())


def test_bronze_to_gold_on_a_standalone_cluster_matches_local_mode(
    kafka_broker, topic, spark_resource, tmp_path
):
    bootstrap = kafka_broker.bootstrap_servers
    local_dir = tmp_path / "local"
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

    # Local mode (this process's session): train the champion and score.
    local_lake = tmp_path / "local_lake"
    resources = build_resources(
        spark_resource,
        kafka=KafkaResource(bootstrap_servers=bootstrap, topic=topic),
        lakehouse=LakehouseResource(root=str(local_lake), spark=spark_resource),
        mlflow_settings=mlflow_settings,
    )
    config = {"ops": {"anomaly_model": {"config": {"labels_path": str(labels)}}}}
    local = materialize(
        [bronze, silver, anomaly_model, gold],
        resources=resources,
        run_config=config,
    )
    assert local.success

    # The cluster: the same definitions through the CLI, only the environment differs.
    cluster_lake = tmp_path / "cluster_lake"
    with LocalSparkCluster(tmp_path / "spark", cores=2, memory="3g") as cluster:
        env = {
            **os.environ,
            "ANOMALY_SPARK_MASTER": cluster.master_url,
            "ANOMALY_LAKEHOUSE_ROOT": str(cluster_lake),
            "ANOMALY_LOCAL_DIR": str(
                local_dir
            ),  # the same MLflow store, so the same champion
            "ANOMALY_KAFKA_BOOTSTRAP": bootstrap,
            "ANOMALY_KAFKA_TOPIC": topic,
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        }
        (tmp_path / "dagster_home").mkdir()
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "dagster"),
                *("asset", "materialize", "-m", "anomaly_assets.definitions"),
                *("--select", TO_GOLD),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
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

    for name, columns in [
        ("bronze_events", ["partition", "offset", "event_id", "batch_id"]),
        ("bronze_quarantine", ["partition", "offset", "reason"]),
        ("silver_events", ["event_id", "batch_id", *FEATURE_COLUMNS]),
    ]:
        want = rows(local_lake, name, columns)
        assert want and rows(cluster_lake, name, columns) == want, name

    scored = ["event_id", "model_version", "is_anomaly", "status", "anomaly_score"]
    want = rows(local_lake, "gold_anomaly_predictions", scored)
    got = rows(cluster_lake, "gold_anomaly_predictions", scored)
    assert len(got) == len(want) == len(rows(local_lake, "silver_events", ["event_id"]))
    assert any(r[2] for r in want), "some events must be anomalies"
    for g, w in zip(got, want, strict=True):
        assert g[:4] == w[:4] and math.isclose(g[4], w[4], rel_tol=1e-9), (g, w)
