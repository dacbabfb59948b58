"""Train → register → champion → gold scoring, against MLflow on sqlite and real Spark/Delta."""

import deltalake
import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from anomaly_assets.definitions import build_resources
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.feedback.store import Feedback, append
from anomaly_assets.gold.assets import gold
from anomaly_assets.gold.checks import GOLD_CHECKS
from anomaly_assets.gold.scoring import ScoringSpec, score_frame
from anomaly_assets.ingestion.assets import bronze
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.model.assets import anomaly_model
from anomaly_assets.silver.assets import silver
from anomaly_assets.silver.features import FEATURE_COLUMNS

ASSETS = [bronze, silver, anomaly_model, gold, *GOLD_CHECKS]
INGEST = [
    AssetKey("bronze_events"),
    AssetKey("bronze_quarantine"),
    AssetKey("bronze_offset_ledger"),
    AssetKey("silver_events"),
    AssetKey("silver_user_profile"),
]
GOLD = [
    AssetKey("gold_anomaly_predictions"),
    AssetKey("gold_batch_drift"),
    AssetKey("gold_model_monitoring"),
]


def _train_config(labels, **extra):
    cfg = {
        "sample_size": 20_000,
        "n_estimators": 100,
        "labels_path": str(labels),
        **extra,
    }
    return {"ops": {"anomaly_model": {"config": cfg}}}


@pytest.fixture
def env(kafka_broker, topic, spark_resource, lakehouse, mlflow_settings, tmp_path):
    kafka = KafkaResource(bootstrap_servers=kafka_broker.bootstrap_servers, topic=topic)
    resources = build_resources(
        spark_resource,
        kafka=kafka,
        lakehouse=lakehouse,
        mlflow_settings=mlflow_settings,
    )
    with DagsterInstance.ephemeral() as instance:
        yield {
            "resources": resources,
            "instance": instance,
            "mlflow": mlflow_settings,
            "labels": tmp_path / "labels.csv",
            "broker": kafka_broker,
            "topic": topic,
            "lakehouse": lakehouse,
        }


def _produce(env, n, seed):
    gen = EventGenerator(seed=seed, n_users=150, anomaly_rate=0.03)
    produce(
        env["broker"].bootstrap_servers,
        env["topic"],
        n,
        gen,
        env["labels"],
        partitions=2,
    )


def _run(env, selection, run_config=None, ok=True):
    result = materialize(
        ASSETS,
        resources=env["resources"],
        instance=env["instance"],
        selection=selection,
        run_config=run_config,
        raise_on_error=False,
    )
    assert result.success is ok
    return result


def _monitoring(env) -> list[dict]:
    path = env["lakehouse"].path("gold_model_monitoring")
    return deltalake.DeltaTable(path).to_pyarrow_table().to_pylist()


def _gold_rows(env):
    table = deltalake.DeltaTable(env["lakehouse"].path("gold_anomaly_predictions"))
    return sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r["event_id"])


def test_train_register_champion_score_and_gate(env):
    _produce(env, 6000, seed=21)
    _run(env, INGEST)

    # No champion yet: gold fails and says which asset to materialise.
    failed = _run(env, GOLD, ok=False)
    message = failed.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert "anomaly_model" in message and "champion" in message

    trained = _run(env, [AssetKey("anomaly_model")], _train_config(env["labels"]))
    meta = trained.asset_materializations_for_node("anomaly_model")[0].metadata
    assert meta["quality_gate"].value == "passed"
    assert meta["model_version"].value == "1" and meta["champion_version"].value == "1"
    assert meta["roc_auc"].value > 0.8
    assert meta["left_out_rows"].value == 0  # nothing scored yet
    assert meta["label_stage"].value.startswith("the forests stand alone: 0 answered")

    client = env["mlflow"].client()
    run = client.get_run(meta["mlflow_run_id"].value)
    assert run.info.status == "FINISHED"
    assert run.data.params["n_estimators"] == "100"
    for key in (
        "train_rows",
        "train_seconds",
        "score_p0",
        "score_p50",
        "score_p99",
        "score_p100",
        "roc_auc",
        "precision",
        "recall",
        "bot_activity_roc_auc",
    ):
        assert key in run.data.metrics, key
    assert run.data.tags["dagster_run_id"] == trained.run_id
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "baseline")}
    assert "baseline/feature_baseline.json" in artifacts
    version = client.get_model_version_by_alias(
        env["mlflow"].registered_model_name, "champion"
    )
    assert str(version.version) == "1" and version.tags["quality_gate"] == "passed"
    info = mlflow.models.get_model_info(
        f"models:/{env['mlflow'].registered_model_name}@champion"
    )
    assert info.signature is not None and info.metadata["features"] == list(
        FEATURE_COLUMNS
    )

    scored = _run(env, GOLD)
    gold_meta = scored.asset_materializations_for_node("gold")[0].metadata
    rows = _gold_rows(env)
    silver = env["lakehouse"].read("silver_events").toPandas().set_index("event_id")
    assert len(rows) == len(silver) == gold_meta["rows_scored"].value
    assert {r["model_version"] for r in rows} == {"1"}
    assert {r["scoring_stage"] for r in rows} == {"forests"}
    assert all(c.passed for c in scored.get_asset_check_evaluations())

    # distributed scores equal scikit-learn's score_samples on the same rows
    model = mlflow.sklearn.load_model(
        f"models:/{env['mlflow'].registered_model_name}/1"
    )
    X = silver.loc[[r["event_id"] for r in rows], list(FEATURE_COLUMNS)].to_numpy(float)
    assert np.array([r["anomaly_score"] for r in rows]) == pytest.approx(
        -model.score_samples(X), rel=1e-9
    )
    anomalies = [r for r in rows if r["is_anomaly"]]
    assert anomalies and all(
        r["top_features"] and r["feature_contributions"] for r in anomalies
    )
    assert {r["status"] for r in anomalies} <= {"WARNING", "CRITICAL"}

    # the day's monitoring row of version 1 says what was scored
    (monitor,) = _monitoring(env)
    scores = np.array([r["anomaly_score"] for r in rows])
    assert monitor["predictions"] == len(rows) and monitor["model_version"] == "1"
    assert monitor["flagged"] == len(anomalies)
    assert monitor["mean_score"] == pytest.approx(scores.mean())
    assert (
        0
        <= monitor["p95_score"] - np.quantile(scores, 0.95, method="inverted_cdf")
        <= 0.0011
    )

    # re-scoring the same batch leaves gold and the monitoring unchanged
    _run(env, GOLD)
    assert _gold_rows(env) == rows
    assert _monitoring(env) == [monitor]

    # a model failing its gate is registered but does not become champion...
    bad = _run(
        env,
        [AssetKey("anomaly_model")],
        # a budget of 0.1 %: gold's flags (at 1 %) are above twice it, a campaign
        _train_config(
            env["labels"], min_roc_auc=1.01, seed=7, threshold_percentile=99.9
        ),
    )
    bad_meta = bad.asset_materializations_for_node("anomaly_model")[0].metadata
    assert bad_meta["quality_gate"].value == "failed"
    assert (
        bad_meta["model_version"].value == "2"
        and bad_meta["champion_version"].value == "1"
    )
    assert client.get_run(bad_meta["mlflow_run_id"].value).info.status == "FINISHED"
    # the rows gold flagged are left out of its training, at most 5 % of them
    flagged = sum(r["is_anomaly"] for r in rows)
    assert bad_meta["left_out_rows"].value == min(flagged, int(0.05 * len(rows))) > 0
    assert "flagged by the champion" in bad_meta["left_out"].value
    assert (
        client.get_model_version(env["mlflow"].registered_model_name, "2").tags[
            "training_left_out"
        ]
        == bad_meta["left_out"].value
    )

    # ...and gold keeps scoring new batches with the previous champion
    _produce(env, 1500, seed=22)
    _run(env, INGEST)
    _run(env, GOLD)
    new_rows = _gold_rows(env)
    assert len(new_rows) > len(rows)
    assert {r["model_version"] for r in new_rows} == {"1"}
    (monitor,) = _monitoring(env)
    assert monitor["predictions"] == len(new_rows), "the new batch folded into the day"
    assert len(monitor["batch_ids"]) == len({r["batch_id"] for r in new_rows})
    drift = deltalake.DeltaTable(
        env["lakehouse"].path("gold_batch_drift")
    ).to_pyarrow_table()
    assert drift.num_rows == 2 * len(FEATURE_COLUMNS)

    # analysts answer the alerts (the generator's truth): the label stage is fitted on
    # the earlier answers, registered as the challenger and gated on the later ones
    attacks = set(pd.read_csv(env["labels"]).query("kind == 'anomaly'")["event_id"])
    alerted = [r for r in new_rows if r["is_anomaly"]]
    answers = [
        Feedback(
            analyst="ana",
            role="analyst",
            action="confirm" if r["event_id"] in attacks else "dismiss",
            incident_id=f"inc-{r['event_id']}",
            user_id=r["user_id"],
            event_ids=[r["event_id"]],
        )
        for r in alerted
    ]
    assert {a.action for a in answers} == {"confirm", "dismiss"}
    append(env["lakehouse"].path("analyst_feedback"), answers)
    labelled = _run(
        env,
        [AssetKey("anomaly_model")],
        _train_config(env["labels"], min_labelled_incidents=10),
    )
    meta = labelled.asset_materializations_for_node("anomaly_model")[0].metadata
    name = env["mlflow"].registered_model_name
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert meta["label_stage_version"].value == str(challenger.version) == "4"
    assert challenger.tags["scoring_stage"] == "forests + analyst labels"
    held = round(0.3 * len(answers))
    assert f"on the {held} incidents answered last" in meta["label_stage"].value
    assert challenger.tags["label_gate_reason"] == meta["label_stage"].value
    champion = client.get_model_version_by_alias(name, "champion")
    promoted = challenger.tags["label_gate"] == "passed"
    assert meta["label_stage_promoted"].value is promoted
    assert str(champion.version) == ("4" if promoted else "3")
    # the challenger loads as gold loads a champion and says which stage scored
    stage = mlflow.sklearn.load_model(f"models:/{name}@challenger")
    info = mlflow.models.get_model_info(f"models:/{name}@challenger")
    spec = ScoringSpec(
        features=tuple(FEATURE_COLUMNS),
        quantiles=info.metadata["score_quantiles"],
        threshold_score=info.metadata["threshold_score"],
        baseline=tuple(info.metadata["baseline_median"]),
        critical_at=99.9,
        model_name=name,
        model_version="4",
    )
    frame = score_frame(stage, spec, silver.reset_index())
    assert set(frame["scoring_stage"]) == {"forests + analyst labels"}
    assert 0.002 <= frame["is_anomaly"].mean() <= 0.03
