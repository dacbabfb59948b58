"""Training without Dagster or MLflow: held-out quality, the operating threshold as an alert
budget, and the quality gate with and without labels."""

import numpy as np
import pandas as pd
import pytest

from anomaly_assets.model.assets import TrainConfig
from anomaly_assets.model.forests import anomaly_scores, held_out
from anomaly_assets.model.training import quality_gate, train
from anomaly_assets.silver.catalogue import THREAT_FEATURES

FEATURES = ("events_10s", "events_1m", "failed_logins_10m", "amount_log")
CONFIG = TrainConfig(n_estimators=30, max_samples=256, seed=3)


def _sample(n: int = 3000, attacks: int = 60, seed: int = 1) -> pd.DataFrame:
    """Ordinary rows, and ``attacks`` bursts (many events in ten seconds) labelled bots."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "events_10s": rng.poisson(1, n).astype(float),
            "events_1m": rng.poisson(3, n).astype(float),
            "failed_logins_10m": rng.binomial(1, 0.02, n).astype(float),
            "amount_log": rng.normal(3, 1, n),
        }
    )
    burst = data.index[:attacks]
    data.loc[burst, "events_10s"] = 40.0
    data.loc[burst, "events_1m"] = 120.0
    return data


def test_quality_is_measured_on_rows_the_forests_did_not_learn():
    data = _sample()
    labels = {f"e{i}": "bot_activity" for i in range(60)}
    trained = train(data, FEATURES, CONFIG, labels)
    assert trained.train_rows + trained.held_out_rows == len(data)
    assert 0.15 < trained.held_out_rows / len(data) < 0.25
    # the held-out attacks are ranked far above ordinary rows
    assert trained.quality.roc_auc > 0.95 and trained.passed
    assert trained.reason.startswith("roc_auc")
    assert "bot_activity" in trained.quality.per_type
    # the threshold is the budget's percentile of every sampled row's score
    assert (
        trained.quantiles["p99"] >= trained.threshold_score >= trained.quantiles["p95"]
    )
    assert set(trained.detectors) >= {"bot_activity"}
    assert set(trained.detectors) <= {"all", *THREAT_FEATURES}


def test_without_labels_the_gate_reads_the_forest_spread():
    trained = train(_sample(), FEATURES, CONFIG, {})
    assert trained.quality is None and trained.reason.startswith("no labels")
    flat = {"p50": 0.5, "p99": 0.51}
    ok, reason = quality_gate(None, flat, CONFIG)
    assert not ok and "0.010 < 0.02" in reason


def test_a_model_that_ranks_badly_fails_the_gate():
    data = _sample()
    # labels on rows the forests find ordinary: the gate must refuse the model
    ordinary = {f"e{i}": "bot_activity" for i in range(1000, 1300)}
    trained = train(data, FEATURES, CONFIG, ordinary)
    assert trained.quality.roc_auc < CONFIG.min_roc_auc and not trained.passed


def test_rows_gold_flagged_are_left_out_of_training_up_to_the_cap():
    data = _sample(attacks=120)  # a campaign: 4 % of the window
    labels = {f"e{i}": "bot_activity" for i in range(120)}
    plain = train(data, FEATURES, CONFIG, labels)
    assert plain.left_out.count == 0 and plain.left_out.flagged_share == 0
    # gold flagged the campaign and 60 ordinary rows; the cap (5 %) keeps the highest
    flagged = data.index < 120
    flagged[1000:1060] = True
    score = np.where(data.index < 120, 0.99, 0.7)
    data = data.assign(
        champion_flagged=np.where(flagged, True, None),
        champion_score=np.where(flagged, score, np.nan),
    )
    # 60 flags, 2 % of the sample (twice the budget): a clean window, nothing left out
    clean = data.assign(
        champion_flagged=np.where(data.index >= 2940, True, None),
        champion_score=0.9,
    )
    kept = train(clean, FEATURES, CONFIG, labels).left_out
    assert kept.count == 0 and "flagged 2.00% of the sample, not above 2.00%" in (
        kept.describe(0.05)
    )
    robust = train(data, FEATURES, CONFIG, labels)
    assert robust.left_out.count == int(0.05 * len(data)) and robust.left_out.capped
    assert robust.left_out.rows[:120].all()  # the campaign scored highest
    assert "flagged by the champion 150): the champion flagged 6.00%" in (
        robust.left_out.describe(0.05)
    )
    # the threshold is the budget over the rows gold let pass, the forests never saw
    # the campaign
    scores = anomaly_scores(robust.model, data[list(FEATURES)].to_numpy(float))
    assert robust.threshold_score == pytest.approx(
        np.percentile(scores[~robust.left_out.rows], 99)
    )
    assert (
        robust.train_rows
        == (~held_out(data["event_id"], CONFIG.seed) & ~robust.left_out.rows).sum()
    )
    held = held_out(data["event_id"], CONFIG.seed)
    campaign = held & (data.index < 120)
    recall = {}
    for name, trained in (("plain", plain), ("robust", robust)):
        scores = anomaly_scores(trained.model, data[list(FEATURES)].to_numpy(float))
        cut = np.quantile(scores[held & (data.index >= 120)], 0.99)
        recall[name] = (scores[campaign] > cut).mean()
    assert recall["robust"] >= 0.9 > recall["plain"]
