"""Fitting the threat forests on a training sample and measuring them: the plain part of
anomaly_model, testable on small frames without Dagster or MLflow (they load scikit-learn,
which the definitions do not)."""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly_assets.model.contamination import LeftOut, leave_out, trigger
from anomaly_assets.model.forests import (
    Quality,
    ThreatForests,
    anomaly_scores,
    detection_quality,
    feature_baseline,
    held_out,
    score_quantiles,
)
from anomaly_assets.model.label_stage import (
    Gate,
    Incident,
    LabelledForests,
    enough,
    feature_scale,
    fit_neighbours,
    gate,
    silent_losses,
    split_by_time,
)


@dataclass(frozen=True)
class Trained:
    """A fitted model and what was measured of it."""

    model: ThreatForests
    features: tuple[str, ...]
    quantiles: dict[str, float]
    threshold_score: float
    baseline: dict
    quality: Quality | None
    passed: bool
    reason: str
    train_rows: int
    held_out_rows: int
    train_seconds: float
    left_out: LeftOut
    #: the sample's features, and its rows x detectors surprisals: what the label stage
    #: is scaled and thresholded on
    rows: np.ndarray
    surprisals: np.ndarray

    @property
    def gate(self) -> str:
        return "passed" if self.passed else "failed"

    @property
    def detectors(self) -> list[str]:
        return [d.name for d in self.model.detectors_]


def quality_gate(
    quality, forest_quantiles: dict[str, float], config
) -> tuple[bool, str]:
    """With labels: ROC AUC at least ``min_roc_auc``; without: the forest over every
    feature's scores (the paper's s(x)) not degenerate. The model's own score is a training
    rank, spread by construction, so it cannot tell."""
    if quality is not None:
        ok = quality.roc_auc >= config.min_roc_auc
        sign = ">=" if ok else "<"
        return ok, f"roc_auc {quality.roc_auc:.3f} {sign} {config.min_roc_auc}"
    spread = forest_quantiles["p99"] - forest_quantiles["p50"]
    ok = spread >= config.min_score_spread
    sign = ">=" if ok else "<"
    return (
        ok,
        f"no labels; p99-p50 spread {spread:.3f} {sign} {config.min_score_spread}",
    )


def train(data: pd.DataFrame, features, config, labels: dict) -> Trained:
    """Fit on ``data`` (event_id and ``features``) less a held-out share, then measure:
    score quantiles, the operating threshold and feature baselines over the sampled rows
    (they describe traffic at large), detection quality on the held-out rows only (where the forests did
    not learn), and the quality gate. ``labels``: event_id -> label, may be empty.

    When ``data`` carries the champion's verdicts (``champion_flagged``, ``champion_score``:
    gold's is_anomaly and anomaly_score) and it flagged more than twice the alert budget
    (a campaign), the rows it flagged, at most ``config.max_left_out_share`` of them, are
    no part of traffic at large: the forests are not fitted on them and the quantiles,
    threshold and baselines do not count them."""
    X = data[list(features)].astype(float)
    model = ThreatForests(
        config.n_estimators, config.max_samples, config.seed, features
    )
    kept_out = held_out(data["event_id"], config.seed)
    flagged = data.get("champion_flagged", pd.Series(False, index=data.index))
    score = data.get("champion_score", pd.Series(0.0, index=data.index))
    left_out = leave_out(
        flagged.eq(True).to_numpy(),  # null where gold did not flag the row
        pd.to_numeric(score).fillna(0.0).to_numpy(),
        config.max_left_out_share,
        above=trigger(config.threshold_percentile),
    )
    ordinary = ~left_out.rows
    rows = X.to_numpy()
    t0 = time.perf_counter()
    model.fit(rows[~kept_out & ordinary])
    train_seconds = time.perf_counter() - t0
    surprisals = model.surprisals(rows)
    scores = model.score_of(surprisals)
    threshold_score = float(
        np.percentile(scores[ordinary], config.threshold_percentile)
    )
    held_scores = scores[kept_out]
    quality = detection_quality(
        held_scores,
        held_scores >= threshold_score,
        data["event_id"].map(labels)[kept_out],
    )
    forest_quantiles = score_quantiles(anomaly_scores(model.forest_, rows))
    passed, reason = quality_gate(quality, forest_quantiles, config)
    return Trained(
        model=model,
        features=tuple(features),
        quantiles=score_quantiles(scores[ordinary]),
        threshold_score=threshold_score,
        baseline=feature_baseline(X[ordinary]),
        quality=quality,
        passed=passed,
        reason=reason,
        train_rows=int((~kept_out & ordinary).sum()),
        held_out_rows=int(kept_out.sum()),
        train_seconds=train_seconds,
        left_out=left_out,
        rows=rows,
        surprisals=surprisals,
    )


@dataclass(frozen=True)
class StageResult:
    """The label stage's challenger (None when the forests stand alone, ``reason`` says
    why), its operating threshold and quantiles over the training sample, and its gate."""

    model: LabelledForests | None
    reason: str
    gate: Gate | None = None
    fit_incidents: int = 0
    threshold_score: float = 0.0
    quantiles: dict | None = None
    fit_seconds: float = 0.0

    @property
    def promoted(self) -> bool:
        return self.gate is not None and self.gate.passed


def incident_rows(
    incidents: list[Incident], event_ids: pd.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row positions in ``event_ids``, the incident each belongs to, its weight: 1 / the
    incident's rows found) for the incidents' events."""
    position = pd.Series(np.arange(len(event_ids)), index=event_ids.to_numpy())
    position = position[~position.index.duplicated()]
    rows, owner, weight = [], [], []
    for k, incident in enumerate(incidents):
        found = position.reindex(list(incident.event_ids)).dropna().astype(int)
        rows += found.tolist()
        owner += [k] * len(found)
        weight += [1.0 / max(len(found), 1)] * len(found)
    return np.array(rows, dtype=int), np.array(owner, dtype=int), np.array(weight)


def train_label_stage(
    trained: Trained, labelled: pd.DataFrame, incidents: list[Incident], config
) -> StageResult:
    """Fit the analysts' vote on the earlier answered incidents (their events' rows in
    ``labelled``: event_id and the features), set its threshold on the training sample as
    the forests' was, and gate it against the forests on the incidents answered last. The
    forests stand alone with too few answers or one class only."""
    why = enough(incidents, config.min_labelled_incidents)
    if why:
        return StageResult(None, f"the forests stand alone: {why}")
    fit, held = split_by_time(incidents, config.label_held_out_share)
    why = enough(fit, 2)
    if why:
        return StageResult(
            None, f"the forests stand alone: before the held-out ones {why}"
        )
    rows, owner, weight = incident_rows(fit, labelled["event_id"])
    confirmed = np.array([fit[k].confirmed for k in owner], dtype=bool)
    if confirmed.all() or not confirmed.any():
        return StageResult(
            None,
            "the forests stand alone: the answered incidents' events of both verdicts "
            "are not in silver",
        )
    forests = trained.model
    X_labelled = labelled[list(trained.features)].to_numpy(float)
    S_labelled = forests.surprisals(X_labelled)
    ordinary = ~trained.left_out.rows  # the threshold's rows
    t0 = time.perf_counter()
    neighbours = fit_neighbours(
        X_labelled[rows],
        confirmed,
        weight,
        feature_scale(trained.rows[ordinary]),
        config.label_neighbours,
        config.label_shift,
    )
    fit_seconds = time.perf_counter() - t0
    challenger = LabelledForests.of(forests, neighbours)
    sample = trained.surprisals[ordinary]
    scores = challenger.score_rows(trained.rows[ordinary], sample)
    threshold = float(np.percentile(scores, config.threshold_percentile))
    rows, owner, _ = incident_rows(held, labelled["event_id"])
    highest = (
        pd.DataFrame(
            {
                "owner": owner,
                "forests": forests.score_rows(X_labelled[rows], S_labelled[rows]),
                "stage": challenger.score_rows(X_labelled[rows], S_labelled[rows]),
            }
        )
        .groupby("owner")[["forests", "stage"]]
        .max()
    )
    if highest.empty:
        return StageResult(
            None,
            "the forests stand alone: the held-out incidents' events are not in silver",
        )
    verdict = np.array([held[k].confirmed for k in highest.index], dtype=bool)
    every, owner, _ = incident_rows(incidents, labelled["event_id"])
    answered = (
        pd.DataFrame({"owner": owner, "top": S_labelled[every].max(axis=1)})
        .assign(detector=S_labelled[every].argmax(axis=1))
        .sort_values("top")
        .groupby("owner")["detector"]
        .last()
        .to_numpy()
    )
    silent = silent_losses(
        sample,
        forests.score_of(sample) >= trained.threshold_score,
        scores >= threshold,
        answered,
        trained.detectors,
    )
    result = gate(
        highest["forests"].to_numpy() >= trained.threshold_score,
        highest["stage"].to_numpy() >= threshold,
        verdict,
        config.label_gate_alpha,
        silent,
    )
    return StageResult(
        challenger,
        result.reason,
        result,
        len(fit),
        threshold,
        score_quantiles(scores),
        fit_seconds,
    )
