"""Leaving a campaign out of training: the cap, the order, and what it buys."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly_assets.model.contamination import CHAMPION_FLAGGED, leave_out
from anomaly_assets.model.forests import ThreatForests, anomaly_scores


@settings(max_examples=200, deadline=None)
@given(
    flags=st.lists(st.booleans(), min_size=1, max_size=300),
    seed=st.integers(0, 2**16),
    cap=st.floats(0.0, 0.5),
    above=st.floats(0.0, 0.2),
)
def test_left_out_rows_are_flagged_above_the_trigger_capped_and_the_highest(
    flags, seed, cap, above
):
    flagged = np.array(flags)
    scores = np.random.default_rng(seed).random(len(flags))
    out = leave_out(flagged, scores, cap, above)
    assert out.flagged_share == flagged.mean()
    if flagged.mean() <= above:  # about the budget's share: a clean window
        assert out.count == 0 and "not above" in out.describe(cap)
        return
    if not int(cap * len(flags)):  # a cap of no rows: said as such
        assert out.count == 0 and "but the cap is" in out.describe(cap)
    assert not (out.rows & ~flagged).any()  # only flagged rows are left out
    assert out.count <= int(cap * len(flags))
    assert out.capped == (flagged.sum() > int(cap * len(flags)))
    if not out.capped:
        assert (out.rows == flagged).all()
    elif out.count:  # every flagged row kept in scores no higher than any left out
        assert scores[flagged & ~out.rows].max() <= scores[out.rows].min()
    assert out.reasons == ({CHAMPION_FLAGGED: out.count} if out.count else {})


def _window(rng, n=6000, campaign=0.04):
    """Ordinary rows in four features, and a campaign: ``campaign`` of the rows alike,
    far out in the first two."""
    X = rng.normal(0, 1, (n, 4))
    k = int(campaign * n)
    X[:k, :2] = rng.normal(6, 0.2, (k, 2))
    return X, np.arange(n) < k


def test_a_campaign_left_out_of_training_scores_as_rare():
    rng = np.random.default_rng(3)
    X, campaign = _window(rng)
    features = ("events_10s", "events_1m", "amount_log", "bytes_log")
    masked = ThreatForests(50, 256, 0, features).fit(X)
    robust = ThreatForests(50, 256, 0, features).fit(X[~campaign])
    later, is_attack = _window(np.random.default_rng(4), n=3000)
    for model, floor in ((masked, None), (robust, 0.95)):
        scores = anomaly_scores(model, later)
        cut = np.quantile(scores[~is_attack], 0.99)
        recall = (scores[is_attack] > cut).mean()
        if floor is None:
            # 4 % alike: the calibration says one row in 25 is as unusual, below the
            # 1 % of ordinary rows the cut lets through
            assert recall < 0.5
        else:
            assert recall >= floor
