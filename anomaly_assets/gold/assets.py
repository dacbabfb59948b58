"""gold_anomaly_predictions (+ gold_batch_drift, gold_model_monitoring): silver rows scored
by the champion model.

Scoring runs on the executors (``mapInPandas``, the model shipped once per worker).
Incremental by commit: gold reads the silver rows inserted or corrected since its cursor
(Change Data Feed) and upserts their scores on event_id, so a corrected silver row gets a
corrected score and re-scoring an unchanged row writes nothing. Each batch's feature drift
against the training baseline is stored in gold_batch_drift for monitoring and for the
enrichment prompt; each step's scorings are folded into the day's gold_model_monitoring row.
"""

import time
from datetime import UTC, datetime

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MetadataValue,
    Output,
    multi_asset,
)
from pydantic import Field

from anomaly_assets.core import cursors, spark_actions
from anomaly_assets.core.incremental import nothing_new
from anomaly_assets.core.lineage import column_lineage
from anomaly_assets.gold import monitoring
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import CHAMPION, MlflowResource
from anomaly_assets.silver.features import (
    FEATURE_FINGERPRINT,
    GOLD_EVENT_COLUMNS,
    stream_features,
)
from anomaly_assets.stream import DEFAULT_STREAM, Stream


class ScoringConfig(Config):
    critical_at: float = Field(
        default=99.9,
        description="Anomalies at or above this severity percentile are CRITICAL "
        "(the rest WARNING).",
    )
    drift_threshold: float = Field(
        default=0.5,
        description="Flag a feature whose batch mean moved more than this many "
        "training standard deviations.",
    )


def load_champion(mlflow_settings: MlflowResource):
    """(model, metadata, version) of the registry's champion; a Failure says what to do."""
    version = mlflow_settings.champion_version()
    if version is None:
        raise Failure(
            f"No '{CHAMPION}' version of model '{mlflow_settings.registered_model_name}' in "
            f"MLflow at {mlflow_settings.tracking_uri}. Materialise the anomaly_model asset "
            "first (its quality gate must pass to become champion)."
        )
    import mlflow  # champion_version() above already pointed it at the registry

    # The alias is resolved once, above; loading by that version keeps the model, its
    # thresholds and the version stamped on every row together if the alias moves meanwhile.
    uri = f"models:/{mlflow_settings.registered_model_name}/{version.version}"
    metadata = mlflow.models.get_model_info(uri).metadata
    mismatch = feature_mismatch(metadata, version.version)
    if mismatch:
        raise Failure(mismatch)
    try:
        model = mlflow.sklearn.load_model(uri)
    except ModuleNotFoundError as error:  # pickled by a release whose modules moved
        raise Failure(
            f"Champion version {version.version} was saved by an earlier release of "
            f"anomaly_assets and names a module this one no longer has ({error.name}). "
            "Materialise anomaly_model to train a champion with this release."
        ) from error
    return model, metadata, version


def feature_mismatch(metadata: dict, version) -> str | None:
    """Why the champion cannot score today's silver rows, or None: a model trained on other
    feature definitions would score with the same column names and other meanings."""
    trained_on = metadata.get("feature_fingerprint")
    if trained_on == FEATURE_FINGERPRINT:
        return None
    return (
        f"Champion version {version} was trained on other feature definitions (fingerprint "
        f"{trained_on or 'not recorded'}; this code computes {FEATURE_FINGERPRINT}). "
        "Materialise anomaly_model to train a champion on the current features. Silver rows "
        "written before the upgrade keep the old definitions: see docs/upgrading.md."
    )


def batch_feature_stats(df, features) -> dict[str, dict[str, dict[str, float]]]:
    """batch_id -> feature -> {mean, std}, in one Spark aggregation."""
    from pyspark.sql import functions as F

    aggs = [F.avg(f).alias(f"{f}__mean") for f in features]
    aggs += [F.stddev_pop(f).alias(f"{f}__std") for f in features]
    out = {}
    for row in df.groupBy("batch_id").agg(*aggs).collect():
        out[row["batch_id"]] = {
            f: {"mean": row[f"{f}__mean"] or 0.0, "std": row[f"{f}__std"] or 0.0}
            for f in features
        }
    return out


def lineage(stream: Stream) -> dict:
    """Event columns carried from silver; the model's outputs depend on every feature."""
    return column_lineage(
        stream.key("silver_events"),
        GOLD_EVENT_COLUMNS,
        {
            c: stream_features(stream)
            for c in (
                "anomaly_score",
                "severity_percentile",
                "is_anomaly",
                "status",
                "feature_contributions",
                "top_features",
            )
        },
    )


CONSUMER = "gold_anomaly_predictions"
OUTPUTS = ("gold_anomaly_predictions", "gold_batch_drift", "gold_model_monitoring")
DRIFT_SCHEMA = (
    "batch_id string, feature string, batch_mean double, train_mean double, "
    "mean_shift_std double, std_ratio double, drifted boolean, model_version string"
)


def build_gold(stream: Stream = DEFAULT_STREAM):
    """gold_anomaly_predictions, gold_batch_drift and gold_model_monitoring of ``stream``."""

    @multi_asset(
        deps=[stream.key("silver_events"), stream.key("anomaly_model")],
        outs={
            "gold_anomaly_predictions": stream.table_out(
                "gold",
                "team:ml-platform",
                {"spark", "delta", "mlflow"},
                description="Every silver event scored by the champion (threat forests): score, "
                "calibrated severity percentile, is_anomaly, status, model version and, for "
                "anomalies, exact TreeSHAP feature contributions and the top contributors.",
                metadata={
                    "delta/write_mode": "merge_upsert",
                    "delta/merge_keys": ["event_id"],
                    "delta/compare_columns": [
                        "anomaly_score",
                        "status",
                        "model_version",
                        "severity_percentile",
                    ],
                    "delta/prune_days_column": "event_time",
                },
            ),
            "gold_model_monitoring": stream.table_out(
                "gold",
                "team:ml-platform",
                {"spark", "delta"},
                description="Per scoring day and model version: predictions, flagged count and "
                "rate, CRITICAL count, mean and p95 score (from a 1,000-bin histogram), scoring "
                "seconds and the batches folded in; a dashboard charts it as it is.",
                metadata={
                    "delta/write_mode": "merge_upsert",
                    "delta/merge_keys": ["day", "model_name", "model_version"],
                    "delta/compare_columns": ["predictions", "batch_ids"],
                },
            ),
            "gold_batch_drift": stream.table_out(
                "gold",
                "team:ml-platform",
                {"spark", "delta"},
                description="Per scored batch and feature: mean shift (in training stds) and std "
                "ratio against the model's training baseline, flagged over a threshold.",
                metadata={
                    "delta/write_mode": "merge_insert",
                    "delta/merge_keys": ["batch_id", "feature", "model_version"],
                },
            ),
        },
        name=stream.named("gold"),
        pool=stream.pool("gold"),
    )
    def gold(
        context: AssetExecutionContext,
        config: stream.config(ScoringConfig, "gold"),
        lakehouse: LakehouseResource,
        mlflow_settings: MlflowResource,
    ):
        with spark_actions.step(context):
            yield from score(
                context,
                config,
                stream.lakehouse(lakehouse),
                stream.mlflow(mlflow_settings),
                stream,
            )

    return gold


gold = build_gold()


def score(context, config: ScoringConfig, lakehouse, mlflow_settings, stream: Stream):
    """Score silver's new and corrected rows with the champion; drift and monitoring."""
    # scikit-learn loads inside the run, not when the definitions are imported.
    from anomaly_assets.gold.scoring import ScoringSpec, score_spark
    from anomaly_assets.model.forests import drift_summary

    model, meta, version = load_champion(mlflow_settings)
    spec = ScoringSpec(
        features=tuple(meta["features"]),
        quantiles=meta["score_quantiles"],
        threshold_score=meta["threshold_score"],
        baseline=tuple(meta["baseline_median"]),
        critical_at=config.critical_at,
        model_name=mlflow_settings.registered_model_name,
        model_version=str(version.version),
    )
    spark = lakehouse.spark_session
    pending = lakehouse.pending_changes(CONSUMER, "silver_events")
    cursor, through = pending.cursor, pending.through
    if pending.changes is None:
        yield from nothing_new(context, "silver_events", through, OUTPUTS)
        return
    # Scoring and the drift statistics both read these rows: read silver once.
    rows = cursors.latest_per_key(pending.changes, ["event_id"]).persist()
    batches = sorted(r[0] for r in rows.select("batch_id").distinct().collect())
    context.log.info(
        f"Scoring silver versions {cursor.version} → {through} ({len(batches)} batch(es)) "
        f"with {spec.model_name} v{spec.model_version}: {batches[:10]}"
    )
    t0 = time.perf_counter()
    scored = score_spark(rows, model, spec).persist()
    per_batch = monitoring.summarise(scored)
    seconds = time.perf_counter() - t0
    monitoring.share_seconds(per_batch, seconds)
    scorings = monitoring.combined(per_batch.values())
    anomalies = {
        "CRITICAL": scorings.critical,
        "WARNING": scorings.flagged - scorings.critical,
        "NORMAL": scorings.predictions - scorings.flagged,
    }
    context.log.info(
        f"Scored {scorings.predictions:,} rows in {seconds:.1f}s: {anomalies}"
    )

    drift_rows, flagged = [], {}
    for batch, stats in batch_feature_stats(rows, spec.features).items():
        drift = drift_summary(stats, meta["feature_baseline"], config.drift_threshold)
        flagged[batch] = sorted(f for f, d in drift.items() if d["drifted"])
        drift_rows += [
            (
                batch,
                f,
                d["batch_mean"],
                d["train_mean"],
                d["mean_shift_std"],
                d["std_ratio"],
                d["drifted"],
                spec.model_version,
            )
            for f, d in drift.items()
        ]
    monitor = {
        "batches": MetadataValue.json(batches),
        "silver_version": through,
        "model_name": spec.model_name,
        "model_version": spec.model_version,
        "rows_scored": scorings.predictions,
        "anomalies_by_status": MetadataValue.json(anomalies),
        "anomaly_rate": scorings.flagged / max(scorings.predictions, 1),
        "mean_score": scorings.score_sum / max(scorings.predictions, 1),
        "p95_score": monitoring.p95(scorings.histogram),
        "scoring_seconds": round(seconds, 2),
        "drifted_features": MetadataValue.json(flagged),
        **lineage(stream),
    }
    yield Output(scored, "gold_anomaly_predictions", metadata=monitor)
    yield Output(
        spark.createDataFrame(drift_rows, DRIFT_SCHEMA),
        "gold_batch_drift",
        metadata={
            "batches": MetadataValue.json(batches),
            "drifted_features": MetadataValue.json(flagged),
        },
    )
    yield Output(
        _monitoring_row(lakehouse, spec, per_batch),
        "gold_model_monitoring",
        metadata={"batches": MetadataValue.json(batches)},
    )
    rows.unpersist()
    scored.unpersist()
    lakehouse.save_cursor(CONSUMER, "silver_events", through)


def _monitoring_row(lakehouse, spec, per_batch):
    """Today's monitoring row of the model version with this step's batches folded in,
    less those a row of the version already holds (None when nothing is left)."""
    from pyspark.sql import functions as F

    today = datetime.now(UTC).date()
    table = lakehouse.read("gold_model_monitoring")
    old, folded = None, set()
    if table is not None:
        version = table.filter(
            (F.col("model_name") == spec.model_name)
            & (F.col("model_version") == spec.model_version)
        )
        mine = F.array(*[F.lit(b) for b in sorted(per_batch)])
        for r in version.filter(
            (F.col("day") == F.lit(today)) | F.arrays_overlap("batch_ids", mine)
        ).collect():
            folded |= set(r["batch_ids"])
            if r["day"] == today:
                old = r.asDict()
    row = monitoring.fold(
        old, today, spec.model_name, spec.model_version, per_batch, folded
    )
    if row is None:
        return None
    names = [c.split()[0] for c in monitoring.MONITORING_SCHEMA.split(", ")]
    return lakehouse.spark_session.createDataFrame(
        [tuple(row[n] for n in names)], monitoring.MONITORING_SCHEMA
    )
