"""Training without Dagster or MLflow: held-out quality, the operating threshold as an alert
budget, and the quality gate with and without labels."""

import numpy as np
import pandas as pd

from anomaly_assets.model.assets import TrainConfig
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
