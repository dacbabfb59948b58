"""anomaly_model: an Isolation Forest trained on silver features, tracked and registered in MLflow.

The MLflow run carries params, training size and time, score quantiles, per-feature baselines
and (when the generator's labels are there) detection quality. The model is logged with a
signature, an input example and, in its metadata, everything scoring needs (quantiles,
threshold, baseline medians, feature order). The ``champion`` alias moves to the new version
only when the quality gate passes.
"""

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from anomaly_assets import settings
from anomaly_assets.model.labels import load_labels
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import (
    CHALLENGER,
    CHAMPION,
    MlflowResource,
    MlflowTracking,
)
from anomaly_assets.silver.features import (
    FEATURE_COLUMNS,
    FEATURE_FINGERPRINT,
    stream_features,
)
from anomaly_assets.stream import DEFAULT_STREAM, Stream


class TrainConfig(Config):
    sample_size: int = Field(
        default=200_000, description="Silver rows sampled for training."
    )
    n_estimators: int = Field(
        default=200,
        description="Trees in the forest over every feature, and in each threat's forest.",
    )
    max_samples: int = Field(
        default=2048,
        description="Rows per tree (the paper's psi). Larger than the paper's 256: a "
        "threat whose feature is zero in nearly all traffic (travel speed, automation "
        "agents) is seen by a tree only if its sample holds one of the rare non-zero "
        "rows (bench_detection: recall at 1 % FPR 0.33-0.73 -> 0.67-1.0 on four types).",
    )
    seed: int = Field(
        default=42,
        description="Seed of the training sample, held-out split and forest.",
    )
    threshold_percentile: float = Field(
        default=99.0,
        description="Operating threshold as an alert budget: events scoring above this "
        "percentile of the training scores are flagged (99: about 1 event in 100).",
    )
    min_roc_auc: float = Field(
        default=0.80,
        description="Quality gate when labels exist: ROC AUC at least this.",
    )
    min_score_spread: float = Field(
        default=0.02,
        description="Quality gate without labels: training p99 - p50 of the forest over "
        "every feature's score (the paper's s(x)).",
    )
    max_left_out_share: float = Field(
        default=0.05,
        description="When gold flagged more than twice the alert budget of the training "
        "sample (a campaign inside the window, which the forests would learn as "
        "ordinary), the flagged rows are left out of the fit, the calibration and the "
        "threshold's rows: at most this share of the sample, the highest scores first. "
        "0 leaves nothing out.",
        ge=0.0,
        le=0.5,
    )
    label_stage: bool = Field(
        default=True,
        description="Fit the label stage on analysts' verdicts (analyst_feedback): a "
        "challenger that moves the scores of rows resembling answered events, promoted to "
        "champion only when its gate passes.",
    )
    min_labelled_incidents: int = Field(
        default=30,
        ge=4,
        description="Answered incidents (confirmed and dismissed, both) before the label "
        "stage is tried; with fewer the forests stand alone.",
    )
    label_held_out_share: float = Field(
        default=0.3,
        gt=0.0,
        lt=1.0,
        description="The share of answered incidents, the last answered, that the label "
        "stage is not fitted on: its gate compares it with the forests on them.",
    )
    label_neighbours: int = Field(
        default=15,
        ge=1,
        description="Answered events that vote on a row's score under the label stage: "
        "its nearest in feature space.",
    )
    label_shift: float = Field(
        default=2.0,
        ge=0.0,
        description="The most the analysts' vote moves a row's score under the label "
        "stage, in nats of surprisal (2: a row seven times rarer or commoner).",
    )
    label_gate_alpha: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="The label stage is promoted when it is right where the forests were "
        "wrong more often than the reverse, beyond chance at this level (one-sided exact "
        "McNemar test on the held-out incidents).",
    )
    labels_path: str = Field(
        default=str(settings.LOCAL_DIR / "labels.csv"),
        description="Generator ground truth (CSV); skipped when missing.",
    )


def sample_features(
    silver, sample_size: int, seed: int, features=FEATURE_COLUMNS, gold=None
):
    """A seeded sample of silver's event ids and features, as pandas, in event_id order;
    with ``gold``, also whether gold flagged each row (``champion_flagged``) and its score
    then (``champion_score``), null where it did not.

    Rows are picked by a hash of (event_id, seed) and sorted, not by Spark's ``sample``
    (a draw per file): the same rows and seed give the same training set, whatever the
    table's file layout, so a re-layout (compaction, partitions) cannot change the model.
    """
    from pyspark.sql import functions as F

    total = silver.count()
    if total == 0:
        raise ValueError("silver_events is empty: ingest events before training.")
    fraction = min(1.0, sample_size / total * 1.05)
    draw = F.abs(F.xxhash64("event_id", F.lit(seed)) % 1_000_000) / 1_000_000
    sample = silver.select("event_id", *features).filter(draw < fraction)
    if gold is not None:
        flagged = (
            gold.filter(F.col("is_anomaly"))
            .groupBy("event_id")
            .agg(F.max("anomaly_score").alias("champion_score"))
            .withColumn("champion_flagged", F.lit(True))
        )
        sample = sample.join(flagged, "event_id", "left")
    return sample.orderBy("event_id").limit(sample_size).toPandas()


def build_anomaly_model(stream: Stream = DEFAULT_STREAM):
    """``stream``'s anomaly_model, trained on its features and registered under its name."""

    @asset(
        key=stream.key("anomaly_model"),
        deps=[stream.key("silver_events")],
        description="Isolation Forest (robust scaling + forest) on silver features, "
        "tracked in MLflow and registered; the 'champion' alias follows the quality gate.",
        group_name=stream.group("gold"),
        kinds={"mlflow", "sklearn", "spark"},
        tags={"layer": "model"},
        owners=["team:ml-platform"],
        pool=stream.pool("anomaly_model"),
    )
    def anomaly_model(
        context: AssetExecutionContext,
        config: stream.config(TrainConfig, "anomaly_model"),
        lakehouse: LakehouseResource,
        mlflow_settings: MlflowResource,
        mlflow_tracking: MlflowTracking,
    ) -> MaterializeResult:
        mlf = mlflow_tracking.run  # dagster-mlflow's MlFlow: mlflow, bound to this run
        try:
            result = _train(
                context,
                config,
                stream.lakehouse(lakehouse),
                stream.mlflow(mlflow_settings),
                mlf,
                stream,
            )
        except BaseException:
            mlf.end_run(status="FAILED")
            raise
        mlf.end_run(status="FINISHED")
        return result

    return anomaly_model


def _train(
    context, config, lakehouse, mlflow_settings, mlf, stream
) -> MaterializeResult:
    # scikit-learn and mlflow load here, inside the run: the definitions stay cheap to import.
    from anomaly_assets.model.training import train

    features = stream_features(stream)
    data = sample_features(
        lakehouse.read("silver_events"),
        config.sample_size,
        config.seed,
        features,
        # Read, not a dependency: gold is scored by the champion this asset registers.
        gold=lakehouse.read("gold_anomaly_predictions"),
    )
    context.log.info(f"Training on {len(data):,} silver rows, {len(features)} features")
    trained = train(data, features, config, load_labels(config.labels_path))
    left_out = trained.left_out.describe(config.max_left_out_share)
    context.log.info(f"Contamination: {left_out}")
    version = _log_and_register(
        context,
        config,
        mlflow_settings,
        mlf,
        stream,
        trained,
        data[list(features)],
        left_out,
    )
    stage = _label_stage(context, config, lakehouse, trained, features)
    stage_version = None
    if stage.model is not None:
        stage_version = _register_stage(
            context, config, mlflow_settings, mlf, trained, stage, data[list(features)]
        )
    elif trained.passed:
        _drop_alias(mlflow_settings, CHALLENGER)  # a stage on older forests
    champion = mlflow_settings.champion_version()
    name = mlflow_settings.registered_model_name
    context.log.info(
        f"Model {name} v{version}: gate {'passed' if trained.passed else 'FAILED'} "
        f"({trained.reason}); label stage: {stage.reason}; "
        f"champion is v{champion.version if champion else 'none'}"
    )
    meta = {
        "mlflow_run_id": mlf.active_run().info.run_id,
        "mlflow_experiment": mlf.experiment_name,
        "mlflow_tracking_uri": mlflow_settings.tracking_uri,
        "model_name": name,
        "model_version": version,
        "quality_gate": trained.gate,
        "quality_gate_reason": trained.reason,
        "champion_version": str(champion.version) if champion else "none",
        "train_rows": trained.train_rows,
        "held_out_rows": trained.held_out_rows,
        "train_seconds": round(trained.train_seconds, 2),
        "left_out_rows": trained.left_out.count,
        "left_out_share": round(trained.left_out.share, 4),
        "left_out": left_out,
        "threshold_score": trained.threshold_score,
        "alert_budget": f"{100 - config.threshold_percentile:g} % of events "
        f"(about {(100 - config.threshold_percentile) * 100:g} alerts per 10,000)",
        "score_quantiles": MetadataValue.json(trained.quantiles),
        "label_stage": stage.reason,
        "label_stage_version": stage_version or "none",
        "label_stage_promoted": stage.promoted and trained.passed,
    }
    quality = trained.quality
    if quality is not None:
        meta.update(
            roc_auc=quality.roc_auc,
            # What share of the alerts at the operating threshold are real, on held-out rows.
            expected_precision=quality.precision,
            precision=quality.precision,
            recall=quality.recall,
            per_type=MetadataValue.json(quality.per_type),
        )
    return MaterializeResult(metadata=meta)


def _log_and_register(
    context, config, mlflow_settings, mlf, stream, trained, X, left_out: str
) -> str:
    """Log the run (params, metrics, baselines, the model with everything scoring needs in
    its metadata), register the model, tag the version with its gate and move the
    champion alias when the gate passed; the new version."""
    from anomaly_assets.model.label_stage import FORESTS

    features, quality = trained.features, trained.quality
    mlf.log_params(
        {
            **config.model_dump(),
            "features": ",".join(features),
            "detectors": ",".join(trained.detectors),
        }
    )
    mlf.set_tag("anomaly_assets.stream", stream.name or "default")
    metrics = {
        "train_rows": trained.train_rows,
        "held_out_rows": trained.held_out_rows,
        "train_seconds": trained.train_seconds,
        "left_out_rows": trained.left_out.count,
        "left_out_share": trained.left_out.share,
        "threshold_score": trained.threshold_score,
        **{f"score_{k}": v for k, v in trained.quantiles.items()},
    }
    if quality is not None:
        metrics.update(
            roc_auc=quality.roc_auc,
            precision=quality.precision,
            recall=quality.recall,
            labelled_anomalies=quality.positives,
        )
        for kind, q in quality.per_type.items():
            metrics.update({f"{kind}_{name}": q[name] for name in q if name != "count"})
    mlf.log_metrics(metrics)
    mlf.log_dict(trained.baseline, "baseline/feature_baseline.json")
    mlf.log_dict(trained.quantiles, "baseline/score_quantiles.json")
    version = _log_model(
        mlf,
        mlflow_settings,
        trained.model,
        "model",
        X,
        {
            "score_quantiles": trained.quantiles,
            "threshold_percentile": config.threshold_percentile,
            "threshold_score": trained.threshold_score,
        },
        trained,
    )
    client = mlflow_settings.client()
    name = mlflow_settings.registered_model_name
    client.set_model_version_tag(name, version, "scoring_stage", FORESTS)
    client.set_model_version_tag(name, version, "quality_gate", trained.gate)
    client.set_model_version_tag(name, version, "quality_gate_reason", trained.reason)
    client.set_model_version_tag(name, version, "training_left_out", left_out)
    client.set_model_version_tag(name, version, "dagster_run_id", context.run_id)
    if trained.passed:
        client.set_registered_model_alias(name, CHAMPION, version)
    return version


def _log_model(mlf, mlflow_settings, model, artifact, X, scoring: dict, trained) -> str:
    """Log ``model`` under ``artifact`` with everything scoring needs in its metadata
    (``scoring``: its quantiles and threshold) and register it; the new version."""
    from mlflow.models import infer_signature

    from anomaly_assets.model.forests import anomaly_scores

    features = list(trained.features)
    example = X.head(5).astype(float)
    info = mlf.sklearn.log_model(
        model,
        name=artifact,
        serialization_format="cloudpickle",
        signature=infer_signature(example, anomaly_scores(model, example.to_numpy())),
        input_example=example,
        registered_model_name=mlflow_settings.registered_model_name,
        metadata={
            "features": features,
            "detectors": trained.detectors,
            "feature_fingerprint": FEATURE_FINGERPRINT,
            **scoring,
            "baseline_median": [trained.baseline[f]["median"] for f in features],
            "feature_baseline": trained.baseline,
        },
    )
    return str(info.registered_model_version)


def answered_incidents(lakehouse, features):
    """(analysts' answered incidents, silver's rows of their events: event_id and
    ``features``), read from analyst_feedback (the triage page's table) and silver."""
    import pandas as pd
    from pyspark.sql import functions as F

    from anomaly_assets.core.verdicts import closing_answers
    from anomaly_assets.model.label_stage import labelled_incidents

    incidents = labelled_incidents(closing_answers(lakehouse))
    ids = sorted({e for x in incidents for e in x.event_ids})
    if not ids:
        return incidents, pd.DataFrame(columns=["event_id", *features])
    rows = lakehouse.read("silver_events").filter(F.col("event_id").isin(ids))
    return incidents, rows.select("event_id", *features).toPandas()


def _label_stage(context, config, lakehouse, trained, features):
    from anomaly_assets.model.training import StageResult, train_label_stage

    if not config.label_stage:
        return StageResult(None, "off (label_stage: false)")
    if not trained.passed:
        return StageResult(None, "not tried: the forests failed their gate")
    incidents, labelled = answered_incidents(lakehouse, features)
    stage = train_label_stage(trained, labelled, incidents, config)
    context.log.info(f"Label stage: {stage.reason}")
    return stage


def _drop_alias(mlflow_settings, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_settings.client().delete_registered_model_alias(
            mlflow_settings.registered_model_name, alias
        )
    except MlflowException:
        pass  # no such alias


def _register_stage(context, config, mlflow_settings, mlf, trained, stage, X) -> str:
    """Log and register the label stage's challenger beside the forests, alias
    ``challenger``; the ``champion`` alias moves to it when its gate passed."""
    from anomaly_assets.model.label_stage import LABELS

    version = _log_model(
        mlf,
        mlflow_settings,
        stage.model,
        "label_stage",
        X,
        {
            "score_quantiles": stage.quantiles,
            "threshold_percentile": config.threshold_percentile,
            "threshold_score": stage.threshold_score,
        },
        trained,
    )
    g = stage.gate
    mlf.log_metrics(
        {
            "label_fit_incidents": stage.fit_incidents,
            "label_held_out_incidents": g.held_out,
            "label_gate_better": g.better,
            "label_gate_worse": g.worse,
            "label_gate_p_value": g.p_value,
            "label_fit_seconds": stage.fit_seconds,
        }
    )
    client = mlflow_settings.client()
    name = mlflow_settings.registered_model_name
    client.set_model_version_tag(name, version, "scoring_stage", LABELS)
    client.set_model_version_tag(
        name, version, "label_gate", "passed" if g.passed else "failed"
    )
    client.set_model_version_tag(name, version, "label_gate_reason", g.reason)
    client.set_model_version_tag(name, version, "dagster_run_id", context.run_id)
    client.set_registered_model_alias(name, CHALLENGER, version)
    if g.passed:
        client.set_registered_model_alias(name, CHAMPION, version)
    return version


anomaly_model = build_anomaly_model()
