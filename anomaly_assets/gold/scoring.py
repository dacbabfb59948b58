"""Distributed scoring: the champion model, shipped once per Python worker, applied per Arrow batch.

``score_frame`` works on a pandas frame (tests and single-process use); ``score_spark`` runs
the same function on executors with ``mapInPandas``.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly_assets.gold.contributions import explainer_for, top_features
from anomaly_assets.model.forests import anomaly_scores, severity_percentile, status_of
from anomaly_assets.model.label_stage import stage_of
from anomaly_assets.silver.features import GOLD_EVENT_COLUMNS

GOLD_SCHEMA = (
    "event_id string, user_id string, event_type string, event_time timestamp, "
    "country string, device_type string, batch_id string, anomaly_score double, "
    "severity_percentile double, is_anomaly boolean, status string, model_name string, "
    "model_version string, feature_contributions map<string,double>, "
    "top_features array<string>, scoring_stage string"
)


@dataclass(frozen=True)
class ScoringSpec:
    """Everything a worker needs besides the model itself."""

    features: tuple[str, ...]
    quantiles: dict[str, float]
    threshold_score: float
    baseline: tuple[float, ...]  # training medians, in feature order
    critical_at: float
    model_name: str
    model_version: str
    top_k: int = 3


def score_frame(
    model,
    spec: ScoringSpec,
    pdf: pd.DataFrame,
    explainer=None,
) -> pd.DataFrame:
    """Scores, severity and status for every row; contributions and top features for the
    anomalies. Pass the model's ``explainer`` when scoring many frames with one model."""
    X = pdf[list(spec.features)].to_numpy(dtype=float)
    scores = anomaly_scores(model, X)
    severity = severity_percentile(scores, spec.quantiles)
    flagged = scores >= spec.threshold_score
    # Only anomalies get a severity status: CRITICAL from critical_at up, else WARNING.
    status = np.where(flagged, status_of(severity, 0.0, spec.critical_at), "NORMAL")
    contributions: list = [None] * len(pdf)
    tops: list = [None] * len(pdf)
    idx = np.flatnonzero(flagged)
    if len(idx):
        explainer = explainer or explainer_for(model, spec.baseline)
        contrib = explainer.contributions(X[idx])
        names = list(spec.features)
        for row, i in enumerate(idx):
            contributions[i] = {n: float(v) for n, v in zip(names, contrib[row])}
        for row, top in zip(idx, top_features(contrib, names, spec.top_k)):
            tops[row] = top
    out = pdf[list(GOLD_EVENT_COLUMNS)].copy()
    out["anomaly_score"] = scores
    out["severity_percentile"] = severity
    out["is_anomaly"] = flagged
    out["status"] = status
    out["model_name"] = spec.model_name
    out["model_version"] = spec.model_version
    out["feature_contributions"] = contributions
    out["top_features"] = tops
    out["scoring_stage"] = stage_of(model)
    return out


def score_spark(df, model, spec: ScoringSpec):
    """Score a Spark DataFrame of silver rows on the executors. The pickled model travels in
    the function's closure (plain DataFrame API, so it also runs over Spark Connect)
    and is unpickled once per Python worker."""
    import hashlib

    import cloudpickle

    blob = cloudpickle.dumps(model)
    key = hashlib.sha256(blob + repr(spec.baseline).encode()).hexdigest()

    def score_batches(batches):
        import pickle

        # An imported module's dict, not a pickled copy: survives across a worker's tasks.
        from anomaly_assets.core.worker_cache import MODELS

        loaded = MODELS.get(key)
        if loaded is None:
            unpickled = pickle.loads(blob)
            loaded = MODELS[key] = (
                unpickled,
                explainer_for(unpickled, spec.baseline),
            )
        model_, explainer = loaded
        for pdf in batches:
            yield score_frame(model_, spec, pdf, explainer)

    # Scoring is CPU-bound Python: spread the rows over every core whatever the file layout
    # upstream (one large file is one partition, one core).
    cores = int(df.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    scored = (
        df.select(*GOLD_EVENT_COLUMNS, *spec.features)
        .repartition(cores)
        .mapInPandas(score_batches, GOLD_SCHEMA)
    )
    return plain_types(scored)


def plain_types(df):
    """``df`` with each column cast to its own type by name. Over Spark Connect a Python
    function's declared string types arrive with an explicit UTF8_BINARY collation, which
    Delta stores as ``string collate UTF8_BINARY`` and other Delta readers (the deltalake
    package) refuse; the cast drops it. In classic Spark it changes nothing."""
    from pyspark.sql import functions as F

    return df.select(
        *(
            F.col(f"`{f.name}`").cast(f.dataType.simpleString()).alias(f.name)
            for f in df.schema
        )
    )
