"""The anomaly model: Isolation Forests (one over every feature, one per named threat) on
log1p and robust scaling, and the numbers kept with it.

Plain numpy / scikit-learn, no Spark session or Dagster (the feature names come from the
silver catalogue, which only builds column expressions): training, calibrated severity, status,
baselines, drift and detection quality are all testable on small arrays.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, RobustScaler

from anomaly_assets.silver.catalogue import LOG_FEATURES, THREAT_FEATURES

#: Training score quantiles kept with the model; severity interpolates between them. The
#: tail is dense so that a severity of 99.9 means the 99.9th percentile of normal traffic,
#: not a straight line drawn from p99 to the maximum.
QUANTILES = (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100)
#: Share of the training sample kept out of the fit: the quality gate measures on it.
HELD_OUT_SHARE = 0.2


def log1p_columns(X, columns=()):
    X = np.array(X, dtype=float, copy=True)
    X[:, list(columns)] = np.log1p(np.maximum(X[:, list(columns)], 0.0))
    return X


def build_pipeline(
    n_estimators: int, max_samples: float, seed: int, features=()
) -> Pipeline:
    """log1p on LOG_FEATURES (found by name in ``features``), robust scaling, the forest."""
    columns = [i for i, name in enumerate(features) if name in LOG_FEATURES]
    return Pipeline(
        [
            ("log", FunctionTransformer(log1p_columns, kw_args={"columns": columns})),
            ("scale", RobustScaler()),
            (
                "forest",
                IsolationForest(
                    n_estimators=n_estimators,
                    max_samples=max_samples,
                    random_state=seed,
                    n_jobs=1,
                ),
            ),
        ]
    )


def anomaly_scores(model, X) -> np.ndarray:
    """Higher is more anomalous. For ``ThreatForests`` (the product's model) in [0, 1]: 1 -
    the share of training rows at least as unusual to the detector that finds the row most
    unusual (a threat forest's share counted e times larger); for a bare forest pipeline
    (models registered before it) the paper's s(x) in (0, 1]."""
    return -model.score_samples(np.asarray(X, dtype=float))


#: One forest over all features spreads its splits over 28 of them, so a single extreme
#: value (an amount 20 times the user's usual, a 36-event minute) is outranked by ordinary
#: rare events; a forest per threat (``THREAT_FEATURES``, from the feature catalogue) sees
#: only its own features (``bench/bench_detection.py``).
#: A threat forest's surprisal counts this much less (in nats) than the forest over every
#: feature: six more detectors looking means more ordinary rows look rare to one of them.
THREAT_PENALTY = 1.0
#: Points of the tail calibration: exceedance shares from 1 down to 1 / rows, log-spaced.
CALIBRATION_POINTS = 512


def tail_calibration(train_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(scores ascending, -ln share of training rows scoring at least that, slope beyond):
    the map from a detector's raw score to its surprisal, in at most CALIBRATION_POINTS
    training scores from the lowest to the highest (log-spaced in rank, dense in the tail).
    Beyond the highest the surprisal keeps rising at the slope of the top tenth of the tail
    (an exponential tail), so rows rarer than any training row still rank among themselves,
    up to twice the highest training surprisal."""
    ordered = np.sort(np.asarray(train_scores, dtype=float))
    n = len(ordered)
    ranks = np.unique(np.round(np.geomspace(1, n, CALIBRATION_POINTS)).astype(int))
    xs = np.unique(ordered[n - ranks])
    # Rows at or above each point, ties included: a plateau of equal scores (most rows
    # alike in a threat's features) is no surprise.
    at_least = n - np.searchsorted(ordered, xs, side="left")
    ys = -np.log(at_least / n)
    top = np.flatnonzero(ys <= ys[-1] - np.log(10))
    j = top[-1] if len(top) else 0
    span = xs[-1] - xs[j]
    slope = (ys[-1] - ys[j]) / span if span > 1e-9 else 0.0
    return xs, ys, float(slope)


def surprisal(scores, calibration: tuple[np.ndarray, np.ndarray, float]) -> np.ndarray:
    xs, ys, slope = calibration
    scores = np.asarray(scores, dtype=float)
    inside = np.interp(scores, xs, ys, left=0.0, right=ys[-1])
    beyond = np.minimum(slope * np.maximum(scores - xs[-1], 0.0), ys[-1])
    return inside + beyond


class Detector(NamedTuple):
    """One forest of ``ThreatForests``: which columns it reads and how its score reads."""

    name: str
    columns: list[int]
    penalty: float
    pipeline: Pipeline
    calibration: tuple[np.ndarray, np.ndarray, float]


class ThreatForests(BaseEstimator):
    """The anomaly model: the forest over every feature plus one forest per named threat
    over that threat's features (``THREAT_FEATURES``, those the stream has), each with
    ``n_estimators`` trees of ``max_samples`` rows (fewer trees let a threat's recall swing
    by 0.3 from one seed to the next on the second mix).

    Each forest's score becomes a surprisal, -ln of the share of training rows it scores at
    least as high, so the detectors compare on one scale; a row's surprisal is the highest,
    the threat forests' less THREAT_PENALTY (the forest over every feature never goes below
    0). The score is 1 - exp(-surprisal): 0.999 means one training row in a thousand is as
    unusual to the forest over every feature, or one in about 2,700 to a threat's forest.
    ``detectors_`` holds a ``Detector`` per forest, ``all`` first.
    """

    def __init__(self, n_estimators=200, max_samples=2048, seed=0, features=()) -> None:
        self.n_estimators, self.max_samples, self.seed = n_estimators, max_samples, seed
        self.features = tuple(features)

    def _specs(self):
        """(name, columns, penalty) per detector: every feature, then each threat with the
        features of it the stream has."""
        yield "all", list(range(len(self.features))), 0.0
        index = {name: i for i, name in enumerate(self.features)}
        for threat, names in THREAT_FEATURES.items():
            cols = [index[n] for n in names if n in index]
            if cols:
                yield threat, cols, THREAT_PENALTY

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        self.detectors_ = []
        for name, cols, penalty in self._specs():
            names = [self.features[i] for i in cols]
            pipeline = build_pipeline(
                self.n_estimators, self.max_samples, self.seed, names
            )
            pipeline.fit(X[:, cols])
            calibration = tail_calibration(-pipeline.score_samples(X[:, cols]))
            self.detectors_.append(Detector(name, cols, penalty, pipeline, calibration))
        return self

    def surprisals(self, X) -> np.ndarray:
        """Rows x detectors: each detector's surprisal, less its penalty."""
        X = np.asarray(X, dtype=float)
        return np.column_stack(
            [
                surprisal(-d.pipeline.score_samples(X[:, d.columns]), d.calibration)
                - d.penalty
                for d in self.detectors_
            ]
        )

    @property
    def forest_(self) -> Pipeline:
        """The forest over every feature."""
        return self.detectors_[0].pipeline

    @staticmethod
    def score_of(surprisals: np.ndarray) -> np.ndarray:
        """The anomaly score of rows x detectors surprisals: 1 - exp(-the highest)."""
        return -np.expm1(-surprisals.max(axis=1))

    def score_rows(self, X, surprisals=None) -> np.ndarray:
        """The anomaly score of rows ``X`` (their ``surprisals``, if already computed)."""
        return self.score_of(self.surprisals(X) if surprisals is None else surprisals)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's sign: higher is more normal."""
        return -self.score_rows(np.asarray(X, dtype=float))

    def predict(self, X) -> np.ndarray:
        """The anomaly score, not +-1 labels: what the logged signature and a model served
        from MLflow return."""
        return anomaly_scores(self, X)


def score_quantiles(scores: np.ndarray) -> dict[str, float]:
    return {
        f"p{q}": float(v) for q, v in zip(QUANTILES, np.percentile(scores, QUANTILES))
    }


def severity_percentile(scores, quantiles: dict[str, float]) -> np.ndarray:
    """Where each score sits in the training distribution, 0..100, linearly interpolated
    between the stored quantiles (whichever a model stored: ``p<percentile>``) and clamped
    at both ends."""
    known = sorted((float(k[1:]), float(v)) for k, v in quantiles.items())
    ys = np.array([q for q, _ in known])
    xs = np.array([v for _, v in known])
    # Ties between quantiles (a flat stretch of scores) keep the highest percentile.
    xs, idx = np.unique(xs[::-1], return_index=True)
    ys = ys[::-1][idx]
    s = np.asarray(scores, dtype=float)
    return np.clip(np.interp(s, xs, ys, left=0.0, right=100.0), 0.0, 100.0)


def held_out(event_ids: pd.Series, seed: int) -> np.ndarray:
    """True for the rows the model is not fitted on (HELD_OUT_SHARE of them, picked by a
    hash of the event id and the seed: the same rows on every run)."""
    keyed = event_ids.astype(str) + f"/{seed}"
    draw = pd.util.hash_pandas_object(keyed, index=False).to_numpy() % 1_000_000
    return draw < HELD_OUT_SHARE * 1_000_000


def status_of(severity, warning_at: float, critical_at: float) -> np.ndarray:
    """CRITICAL at or above ``critical_at``, WARNING at or above ``warning_at``, else NORMAL."""
    severity = np.asarray(severity, dtype=float)
    return np.where(
        severity >= critical_at,
        "CRITICAL",
        np.where(severity >= warning_at, "WARNING", "NORMAL"),
    )


def feature_baseline(X: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-feature training statistics: drift compares batches with these."""
    out = {}
    for col in X.columns:
        v = X[col].to_numpy(dtype=float)
        p1, p50, p99 = np.percentile(v, [1, 50, 99])
        out[col] = {
            "mean": float(v.mean()),
            "std": float(v.std()),
            "min": float(v.min()),
            "p1": float(p1),
            "median": float(p50),
            "p99": float(p99),
            "max": float(v.max()),
        }
    return out


def drift_summary(
    batch_stats: dict[str, dict[str, float]],
    baseline: dict[str, dict[str, float]],
    threshold: float,
) -> dict[str, dict[str, float | bool]]:
    """Mean shift in training standard deviations, and the std ratio, per feature.

    ``batch_stats`` holds ``mean`` and ``std`` per feature; a feature is flagged when its
    mean moved more than ``threshold`` training stds or its std changed by more than a
    factor of (1 + threshold).
    """
    out = {}
    for name, base in baseline.items():
        stats = batch_stats[name]
        scale = base["std"] if base["std"] > 1e-12 else 1.0
        shift = (stats["mean"] - base["mean"]) / scale
        ratio = (stats["std"] + 1e-12) / (base["std"] + 1e-12)
        out[name] = {
            "batch_mean": stats["mean"],
            "train_mean": base["mean"],
            "mean_shift_std": float(shift),
            "std_ratio": float(ratio),
            "drifted": bool(
                abs(shift) > threshold
                or not (1 / (1 + threshold)) <= ratio <= 1 + threshold
            ),
        }
    return out


@dataclass
class Quality:
    roc_auc: float
    precision: float
    recall: float
    per_type: dict[str, dict[str, float]]
    positives: int


def detection_quality(scores, flagged, labels: pd.Series) -> Quality | None:
    """ROC AUC, precision and recall at the operating threshold, overall and per type.

    ``labels`` holds the anomaly type per row, or None / NaN for normal rows. Per type, AUC
    compares that type's rows with normal rows, ``recall`` is the share of them flagged and
    ``recall_at_1pct_fpr`` the share scoring above the 99th percentile of normal rows (the
    recall an alert budget of 1 % of ordinary traffic buys).
    """
    scores = np.asarray(scores, dtype=float)
    flagged = np.asarray(flagged, dtype=bool)
    is_anomaly = labels.notna().to_numpy()
    if is_anomaly.all() or not is_anomaly.any():
        return None
    tp = int((flagged & is_anomaly).sum())
    cut = float(np.quantile(scores[~is_anomaly], 0.99))
    per_type = {}
    for kind in sorted(labels.dropna().unique()):
        mask = (labels == kind).to_numpy()
        keep = mask | ~is_anomaly
        per_type[kind] = {
            "count": int(mask.sum()),
            "roc_auc": float(roc_auc_score(mask[keep], scores[keep])),
            "recall": float(flagged[mask].mean()),
            "recall_at_1pct_fpr": float((scores[mask] > cut).mean()),
        }
    return Quality(
        roc_auc=float(roc_auc_score(is_anomaly, scores)),
        precision=tp / max(int(flagged.sum()), 1),
        recall=tp / int(is_anomaly.sum()),
        per_type=per_type,
        positives=int(is_anomaly.sum()),
    )
