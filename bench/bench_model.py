"""Detection quality and scoring speed of the anomaly model.

1. Mulcross (Rocke & Woodruff's generator as used by Liu, Ting & Zhou's Isolation Forest
   paper: 262,144 points, 4 dimensions, 10 % anomalies in 2 clusters, distance factor 2):
   ROC AUC of the project's pipeline next to the paper's 0.97 (t = 100 trees, psi = 256).
2. Generated events (1 % anomalies, all six types) through the real pipeline
   (Kafka → bronze → silver → anomaly_model): ROC AUC, precision, recall per type.
3. Scoring 1,000,000 silver rows: distributed (Spark mapInPandas, model broadcast) side by
   side with single-process scikit-learn ``score_samples`` on the same rows.

``python bench/bench_model.py [--events 200000] [--score-rows 1000000]``
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import PeakMemory
from dagster import AssetKey, DagsterInstance, materialize
from scipy.stats import chi2
from sklearn.metrics import roc_auc_score

from anomaly_assets.definitions import build_resources
from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.gold.scoring import ScoringSpec, score_frame, score_spark
from anomaly_assets.ingestion.assets import bronze
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.model.assets import anomaly_model
from anomaly_assets.model.forests import (
    ThreatForests,
    anomaly_scores,
    build_pipeline,
    score_quantiles,
)
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource
from anomaly_assets.resources.spark import SparkResource
from anomaly_assets.silver.assets import silver
from anomaly_assets.silver.features import FEATURE_COLUMNS


def mulcross(n=262_144, p=4, contamination=0.10, clusters=2, distance=2.0, seed=0):
    """Normal points ~ N(0, I); anomalies in ``clusters`` tight clusters whose centres sit
    ``distance`` x sqrt(chi2_p(0.999) / p) away on every coordinate (signs drawn per
    cluster), with a spread of a tenth of the normal one, after Rocke & Woodruff's
    MULCROSS."""
    rng = np.random.default_rng(seed)
    n_out = int(n * contamination)
    X = rng.normal(size=(n - n_out, p))
    unit = distance * np.sqrt(chi2.ppf(0.999, p) / p)
    sizes = np.full(clusters, n_out // clusters)
    sizes[: n_out - sizes.sum()] += 1
    outs = []
    for size in sizes:
        centre = unit * rng.choice([-1.0, 1.0], p)
        outs.append(centre + 0.1 * rng.normal(size=(size, p)))
    X = np.vstack([X, *outs])
    y = np.r_[np.zeros(n - n_out), np.ones(n_out)]
    return X, y


def bench_mulcross() -> None:
    X, y = mulcross()
    model = build_pipeline(100, 256, seed=0).fit(X)
    auc = roc_auc_score(y, anomaly_scores(model, X))
    print(
        "\n== Mulcross (262,144 x 4, 10 % anomalies in 2 clusters, distance factor 2) =="
    )
    print(
        f"ROC AUC  this pipeline (t=100, psi=256): {auc:.3f}   Liu, Ting & Zhou 2008: 0.97"
    )


def bench_events(tmp: Path, n_events: int, instance):
    broker = LocalKafkaBroker(
        port=free_port(), controller_port=free_port(), data_dir=tmp / "kafka"
    ).start()
    try:
        labels = tmp / "labels.csv"
        produce(
            broker.bootstrap_servers,
            "bench-model",
            n_events,
            EventGenerator(seed=5, anomaly_rate=0.01),
            labels,
            partitions=3,
            progress_every=15,
        )
        spark = SparkResource(log_level="ERROR", driver_memory="8g")
        lakehouse = LakehouseResource(root=str(tmp / "lake"), spark=spark)
        mlflow_settings = MlflowResource(
            tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
            artifact_location=str(tmp / "mlartifacts"),
        )
        resources = build_resources(
            spark,
            lakehouse=lakehouse,
            mlflow_settings=mlflow_settings,
            kafka=KafkaResource(
                bootstrap_servers=broker.bootstrap_servers, topic="bench-model"
            ),
        )
        assets = [bronze, silver, anomaly_model]
        assert materialize(
            assets,
            resources=resources,
            instance=instance,
            run_config={"ops": {"bronze": {"config": {"max_events": n_events}}}},
            selection=[
                AssetKey("bronze_events"),
                AssetKey("bronze_quarantine"),
                AssetKey("bronze_offset_ledger"),
                AssetKey("silver_events"),
                AssetKey("silver_user_profile"),
            ],
        ).success
        trained = materialize(
            assets,
            resources=resources,
            instance=instance,
            selection=[AssetKey("anomaly_model")],
            run_config={
                "ops": {"anomaly_model": {"config": {"labels_path": str(labels)}}}
            },
        )
        meta = trained.asset_materializations_for_node("anomaly_model")[0].metadata
    finally:
        broker.stop()
    print(
        f"\n== Generated events ({n_events:,}, 1 % anomalies, six types), "
        f"threshold = training p99 =="
    )
    print(
        f"overall  ROC AUC {meta['roc_auc'].value:.3f}  precision "
        f"{meta['precision'].value:.3f}  recall {meta['recall'].value:.3f}  "
        f"(gate {meta['quality_gate'].value})"
    )
    print(f"{'type':<22}{'events':>8}{'ROC AUC':>9}{'recall':>8}")
    for kind, q in meta["per_type"].value.items():
        print(f"{kind:<22}{q['count']:>8}{q['roc_auc']:>9.3f}{q['recall']:>8.3f}")
    return lakehouse, spark


def bench_scoring(lakehouse, spark, n_rows: int, tmp: Path) -> None:
    from pyspark.sql import functions as F

    silver = lakehouse.read("silver_events")
    base_n = silver.count()
    copies = -(-n_rows // base_n)
    path = str(tmp / "silver_rows.parquet")
    (
        silver.crossJoin(
            spark.spark_session.range(copies).withColumnRenamed("id", "_copy")
        )
        .withColumn("event_id", F.concat_ws("-", "event_id", "_copy"))
        .drop("_copy")
        .limit(n_rows)
        .write.parquet(path)
    )
    rows = spark.spark_session.read.parquet(path)
    n = rows.count()
    pdf = rows.toPandas()
    X = pdf[list(FEATURE_COLUMNS)].to_numpy(float)
    # The product's model: the forest over every feature and one per threat, 200 trees each.
    model = ThreatForests(200, 2048, seed=1, features=FEATURE_COLUMNS).fit(X[:200_000])
    train_scores = anomaly_scores(model, X[:200_000])
    spec = ScoringSpec(
        FEATURE_COLUMNS,
        score_quantiles(train_scores),
        float(np.percentile(train_scores, 99)),
        tuple(np.median(X[:200_000], axis=0)),
        99.9,
        "bench",
        "1",
    )
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        scored_path = str(tmp / "scored.parquet")
        score_spark(rows, model, spec).write.parquet(scored_path)
        scored = spark.spark_session.read.parquet(scored_path)
        n_scored = scored.count()
        spark_s = time.perf_counter() - t0
        spark_mem = mem.peak_total
        mem.reset()
        t0 = time.perf_counter()
        -model.score_samples(X)
        sk_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        score_frame(model, spec, pdf)
        frame_s = time.perf_counter() - t0
        local_mem = mem.peak_total
    assert n_scored == n
    print(
        f"\n== Scoring {n:,} silver rows ({len(FEATURE_COLUMNS)} features, threat forests: "
        f"{len(model.detectors_)} x 200 trees, 2 cores) =="
    )
    print(f"{'how':<58}{'seconds':>8}{'rows/s':>11}")
    print(
        f"{'Spark mapInPandas, model in the closure (+ TreeSHAP ~1 %)':<58}{spark_s:>8.1f}"
        f"{n / spark_s:>11,.0f}"
    )
    print(f"{'single process: score_samples only':<58}{sk_s:>8.1f}{n / sk_s:>11,.0f}")
    print(
        f"{'single process: same work as Spark (score_frame)':<58}{frame_s:>8.1f}"
        f"{n / frame_s:>11,.0f}"
    )
    print(
        f"peak memory (process tree RSS): Spark run {spark_mem:,.0f} MiB, "
        f"single-process runs {local_mem:,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--score-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-mulcross", action="store_true")
    args = parser.parse_args()
    if not args.skip_mulcross:
        bench_mulcross()
    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        lakehouse, spark = bench_events(Path(tmp), args.events, instance)
        bench_scoring(lakehouse, spark, args.score_rows, Path(tmp))


if __name__ == "__main__":
    main()
