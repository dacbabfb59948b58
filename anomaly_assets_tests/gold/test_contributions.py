"""Exact TreeSHAP contributions: they name the injected feature, correlated or not, and add up."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly_assets.gold.contributions import (
    ForestExplainer,
    ThreatExplainer,
    _memoized_path_length,
    explainer_for,
    top_features,
)
from anomaly_assets.model.forests import (
    ThreatForests,
    anomaly_scores,
    build_pipeline,
)
from anomaly_assets.silver.catalogue import THREAT_FEATURES
from anomaly_assets.silver.features import FEATURE_COLUMNS


def _correlated(rng, n, d, rho):
    cov = np.full((d, d), rho)
    np.fill_diagonal(cov, 1.0)
    return rng.multivariate_normal(np.zeros(d), cov, size=n)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    d=st.integers(4, 16),
    rho=st.sampled_from([0.0, 0.5, 0.8, 0.95, 0.99]),
    seed=st.integers(0, 2**16),
)
def test_top_feature_is_the_injected_one(d, rho, seed):
    """Normal rows of ``d`` features with pairwise correlation ``rho`` (0.99: near twins);
    anomalies are normal rows with one feature pushed 5-8 standard deviations out. With the
    product's forest (200 trees of 2,048 samples) the pushed feature, not one of its
    correlated neighbours, comes first for >= 95 % of them."""
    rng = np.random.default_rng(seed)
    X = _correlated(rng, 20_000, d, rho)
    model = build_pipeline(200, 2048, seed).fit(X)
    n = 300
    anomalies = _correlated(rng, n, d, rho)
    injected = rng.integers(0, d, n)
    anomalies[np.arange(n), injected] += rng.choice([-1, 1], n) * rng.uniform(5, 8, n)
    reference = np.median(X, axis=0)
    contrib = ForestExplainer(model, reference).contributions(anomalies)
    hit = (contrib.argmax(axis=1) == injected).mean()
    assert hit >= 0.95, f"d={d} rho={rho}: the injected feature is first for {hit:.1%}"
    # Exact and additive: each row's contributions add up to s(x) - s(reference).
    total = anomaly_scores(model, anomalies) - anomaly_scores(model, reference[None, :])
    assert contrib.sum(axis=1) == pytest.approx(total, abs=1e-6)


def test_reference_row_and_empty_input():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(3000, 4))
    model = build_pipeline(50, 256, 3).fit(X)
    reference = np.median(X, axis=0)
    explainer = ForestExplainer(model, reference)
    assert explainer.contributions(np.empty((0, 4))).shape == (0, 4)
    # The reference itself differs from itself in nothing: all contributions are zero
    # (the tangent branch of the rescaling, no division by zero).
    same = explainer.contributions(reference[None, :])
    assert np.all(np.isfinite(same)) and np.abs(same).max() < 1e-12
    far = reference.copy()
    far[2] = 50.0
    contrib = explainer.contributions(far[None, :])
    assert contrib[0].argmax() == 2 and contrib[0, 2] > 0
    names = ["a", "b", "c", "d"]
    assert top_features(contrib, names, k=2)[0][0] == "c"


def test_threat_forests_credit_the_detector_that_gave_the_score():
    """A row the travel forest finds most unusual takes its credit from that forest alone:
    the travel features, nothing else; a row the forest over every feature scores (an odd
    hour, no threat's feature) takes credit where it is odd; both add up to score(x) -
    score(reference)."""
    rng = np.random.default_rng(8)
    names = list(FEATURE_COLUMNS)
    X = rng.lognormal(0, 0.5, size=(20_000, len(names)))
    travel = [names.index(c) for c in THREAT_FEATURES["impossible_travel"]]
    # Travel is zero but for a few ordinary trips.
    trips = rng.random((20_000, 1)) < 0.002
    X[:, travel] = np.where(trips, rng.uniform(50, 500, (20_000, 1)), 0.0)
    model = ThreatForests(100, 1024, 8, names).fit(X)
    reference = np.median(X, axis=0)
    jumps = X[:200].copy()
    jumps[:, travel] = rng.uniform(3000, 9000, (200, 1))
    odd = X[200:400].copy()
    odd[:, names.index("hour_of_day")] *= 6  # no threat's feature
    rows = np.r_[jumps, odd]
    contrib = ThreatExplainer(model, reference).contributions(rows)
    winners = np.array([d[0] for d in model.detectors_])[
        model.surprisals(rows).argmax(axis=1)
    ]
    # Both detectors give scores here (a forest cannot tell a jump from the rarest trip,
    # so the forest over every feature wins some jumps too).
    by_travel = winners == "impossible_travel"
    assert by_travel[:200].sum() >= 10 and (winners[200:] == "all").mean() >= 0.9
    others = np.setdiff1d(np.arange(len(names)), travel)
    assert np.all(contrib[np.ix_(by_travel, others)] == 0)
    assert np.isin(contrib[by_travel].argmax(axis=1), travel).all()
    top = contrib[200:][winners[200:] == "all"].argmax(axis=1)
    assert (top == names.index("hour_of_day")).mean() >= 0.9
    total = anomaly_scores(model, rows) - anomaly_scores(model, reference[None, :])
    assert contrib.sum(axis=1) == pytest.approx(total, abs=1e-9)
    assert explainer_for(model, reference).__class__ is ThreatExplainer
    forest = build_pipeline(20, 256, 1).fit(X)
    assert explainer_for(forest, reference).__class__ is ForestExplainer


def test_fast_parsing_gives_shaps_own_values_and_restores_scikit_learn():
    import shap
    from sklearn.ensemble import _iforest

    rng = np.random.default_rng(5)
    X = rng.lognormal(size=(3000, 4))
    forest = build_pipeline(20, 1024, 0)[-1].fit(X)
    ref = np.median(X, axis=0)[None, :]
    plain = shap.TreeExplainer(forest, data=ref, feature_perturbation="interventional")
    original = _iforest._average_path_length
    with pytest.raises(RuntimeError), _memoized_path_length():
        fast = shap.TreeExplainer(
            forest, data=ref, feature_perturbation="interventional"
        )
        # Arrays of any size still get scikit-learn's answer while patched.
        sizes = np.array([[1, 2, 3], [256, 1024, 7]])
        np.testing.assert_array_equal(
            _iforest._average_path_length(sizes), original(sizes)
        )
        raise RuntimeError
    assert _iforest._average_path_length is original
    np.testing.assert_array_equal(
        fast.shap_values(X[:100], check_additivity=False),
        plain.shap_values(X[:100], check_additivity=False),
    )
    assert fast.expected_value == plain.expected_value
