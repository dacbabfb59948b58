"""The label stage without Dagster or MLflow: verdicts to labelled incidents in time
order, the analysts' vote (properties over any answers), its gate (properties over any
decisions), the stage trained on a sample whose analysts confirm one detector's alerts
and dismiss another's, and its contributions adding up."""

import pickle
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.gold.contributions import ThreatExplainer
from anomaly_assets.model.assets import TrainConfig
from anomaly_assets.model.forests import anomaly_scores
from anomaly_assets.model.label_stage import (
    LABELS,
    Incident,
    LabelledForests,
    enough,
    feature_scale,
    fit_neighbours,
    gate,
    labelled_incidents,
    split_by_time,
    stage_of,
)
from anomaly_assets.model.training import train, train_label_stage

T0 = datetime(2026, 12, 1, tzinfo=UTC)
FEATURES = ("events_10s", "events_1m", "failed_logins_10m", "amount_log")
CONFIG = TrainConfig(
    n_estimators=30, max_samples=256, seed=3, min_labelled_incidents=10
)


def answer(action, incident, minutes, events=("e1",)):
    return {
        "feedback_id": f"f{incident}{minutes}",
        "recorded_at": T0 + timedelta(minutes=minutes),
        "action": action,
        "incident_id": incident,
        "event_ids": list(events),
    }


def test_answered_incidents_are_latest_verdicts_in_time_order():
    rows = [
        answer("confirm", "a", 9),
        answer("dismiss", "b", 1, ("e2", "e3")),
        answer("confirm", "b", 5, ("e2", "e3")),  # changed its mind: confirmed
        answer("confirm", "c", 2),
        answer("reopen", "c", 3),  # withdrawn
        answer("dismiss", "d", 4, ()),  # no events to learn from
    ]
    got = labelled_incidents(rows)
    assert [(x.incident_id, x.confirmed) for x in got] == [("b", True), ("a", True)]
    assert got[0].event_ids == ("e2", "e3")


def incidents(flags):
    return [
        Incident(f"i{k}", T0 + timedelta(minutes=k), ok, (f"e{k}",))
        for k, ok in enumerate(flags)
    ]


def test_the_gate_holds_out_the_incidents_answered_last():
    fit, held = split_by_time(incidents([True, False] * 10), 0.3)
    assert len(held) == 6 and max(x.recorded_at for x in fit) < min(
        x.recorded_at for x in held
    )
    assert "fewer than 30" in enough(incidents([True, False] * 5), 30)
    assert "all dismissed" in enough(incidents([False] * 40), 30)
    assert enough(incidents([True, False] * 20), 30) is None


decisions = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.booleans()), max_size=60
)


@given(decisions)
def test_the_gate_promotes_only_a_difference_beyond_chance(rows):
    forests, stage, truth = (np.array(c, dtype=bool) for c in zip(*rows or [(0, 0, 0)]))
    if not rows:
        forests = stage = truth = np.array([], dtype=bool)
    g = gate(forests, stage, truth, 0.05)
    assert g.held_out == len(rows)
    assert g.better == int(((stage == truth) & (forests != truth)).sum())
    assert g.worse == int(((forests == truth) & (stage != truth)).sum())
    # the same decisions, or no more right than wrong, never pass
    same = gate(forests, forests, truth, 0.05)
    assert not same.passed and same.p_value == 1.0
    if g.better <= g.worse:
        assert not g.passed
    # passing needs at least 5 more right than wrong (2^-5 < 0.05 < 2^-4)
    if g.passed:
        assert g.better >= 5
    # swapping the two models flips which side the evidence is on
    assert gate(stage, forests, truth, 0.05).better == g.worse


@given(
    st.integers(0, 2**32 - 1),
    st.integers(2, 60),
    st.floats(0.5, 4.0),
    st.integers(1, 20),
)
def test_the_vote_speaks_only_near_answered_events(seed, answered, shift, k):
    rng = np.random.default_rng(seed)
    traffic = rng.normal(0, 1, size=(500, 3))
    X = rng.normal(0, 1, size=(answered, 3))
    confirmed = rng.random(answered) < 0.5
    votes = fit_neighbours(
        X, confirmed, np.ones(answered), feature_scale(traffic), k, shift
    )
    moved = votes.shift(np.r_[X, traffic])
    # bounded by label_shift, never beyond
    assert np.all(np.abs(moved) < shift)
    # far from every answered event (and clipped there), the forests' ranking stands
    assert np.allclose(votes.shift(np.full((4, 3), 1e6)), 0.0, atol=1e-3)
    # an answered event leans its own verdict's way when its neighbours agree
    if confirmed.all() or not confirmed.any():
        sign = 1.0 if confirmed.all() else -1.0
        assert np.all(sign * moved[:answered] > 0)


def test_the_vote_lifts_what_analysts_confirm_and_lowers_what_they_dismiss():
    rng = np.random.default_rng(0)
    traffic = rng.normal(0, 1, size=(2000, 2))
    confirmed_at, dismissed_at = np.array([4.0, 0.0]), np.array([0.0, 4.0])
    X = np.r_[
        confirmed_at + rng.normal(0, 0.3, (20, 2)),
        dismissed_at + rng.normal(0, 0.3, (20, 2)),
    ]
    # two analysts' mistakes among them
    confirmed = np.r_[np.ones(19), 0, np.ones(1), np.zeros(19)].astype(bool)
    votes = fit_neighbours(X, confirmed, np.ones(40), feature_scale(traffic), 15, 2.0)
    near = votes.shift(np.array([confirmed_at, dismissed_at, [-4.0, -4.0]]))
    assert near[0] > 1.0 and near[1] < -1.0 and abs(near[2]) < 0.05


def campaign_sample(seed=1):
    """Ordinary rows; bursts (many events in ten seconds) and failed-login runs, some of
    each alerted; analysts confirm the failed logins and dismiss the bursts (a benign
    batch job)."""
    rng = np.random.default_rng(seed)
    n = 4000
    data = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "events_10s": rng.poisson(1, n).astype(float),
            "events_1m": rng.poisson(3, n).astype(float),
            "failed_logins_10m": rng.binomial(1, 0.02, n).astype(float),
            "amount_log": rng.normal(3, 1, n),
        }
    )
    bursts, logins = data.index[:40], data.index[40:80]
    data.loc[bursts, "events_10s"] = rng.uniform(8, 40, 40)
    data.loc[logins, "failed_logins_10m"] = rng.uniform(3, 10, 40)
    answered = [
        Incident(
            data.event_id[i],
            T0 + timedelta(minutes=int(m)),
            i >= 40,
            (data.event_id[i],),
        )
        for m, i in enumerate(rng.permutation(np.r_[bursts, logins]))
    ]
    return data, answered


def test_the_stage_trains_scores_and_is_gated_against_the_forests():
    data, answered = campaign_sample()
    trained = train(data, FEATURES, CONFIG, {})
    stage = train_label_stage(trained, data, answered, CONFIG)
    model = stage.model
    assert isinstance(model, LabelledForests) and stage_of(model) == LABELS
    assert stage.fit_incidents == 56 and stage.gate.held_out == 24
    # the forests alert on dismissed bursts the stage does not, beyond chance; but it
    # would also quiet large purchases no analyst answered: refused
    assert stage.gate.better >= 5 and stage.gate.worse == 0
    assert not stage.promoted
    assert re.search(r"drop \d+% of high_value_purchase's alerts", stage.reason)
    # once analysts have confirmed a few large purchases, it is promoted
    top = data["amount_log"].nlargest(8).index
    purchases = [
        Incident(
            data.event_id[i], T0 - timedelta(minutes=k + 1), True, (data.event_id[i],)
        )
        for k, i in enumerate(top)
    ]
    spoken = train_label_stage(trained, data, purchases + answered, CONFIG)
    assert spoken.promoted and "drop" not in spoken.reason
    scores = anomaly_scores(model, data[list(FEATURES)].to_numpy(float))
    # the confirmed failed logins now outrank the dismissed bursts
    assert np.median(scores[40:80]) > np.median(scores[:40])
    assert stage.threshold_score == pytest.approx(np.percentile(scores, 99.0))
    # pickled as MLflow logs it, it scores the same
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(anomaly_scores(again, data[list(FEATURES)]), scores)
    # too few answers: the forests stand alone
    few = train_label_stage(trained, data, answered[:9], CONFIG)
    assert few.model is None and "fewer than 10" in few.reason
    # answers whose events silver no longer holds teach nothing
    gone = train_label_stage(trained, data.iloc[:0], answered, CONFIG)
    assert gone.model is None and "not in silver" in gone.reason


def test_contributions_of_the_stage_add_up_and_explain_the_row():
    data, answered = campaign_sample()
    trained = train(data, FEATURES, CONFIG, {})
    model = train_label_stage(trained, data, answered, CONFIG).model
    X = data[list(FEATURES)].to_numpy(float)
    reference = np.median(X, axis=0)
    rows = X[:80]
    contrib = ThreatExplainer(model, reference).contributions(rows)
    total = anomaly_scores(model, rows) - anomaly_scores(model, reference[None, :])
    up = total > 0
    assert contrib[up].sum(axis=1) == pytest.approx(total[up], abs=1e-9)
    # the failed-login rows are explained by failed logins
    failed = FEATURES.index("failed_logins_10m")
    assert (contrib[40:80].argmax(axis=1) == failed).mean() >= 0.9
    # a vote of many nats: scores stay below 1 and keep the order of z
    steep = LabelledForests.of(trained.model, replace(model.neighbours_, shift_nats=50))
    S = steep.surprisals(X)
    z = S.max(axis=1) + steep.neighbours_.shift(X)
    s = steep.score_rows(X, S)
    assert z.max() > 40 and s.max() < 1.0
    assert np.array_equal(np.argsort(s, kind="stable"), np.argsort(z, kind="stable"))
    # no vote: the forests' order, on the stage's own scale
    flat = LabelledForests.of(trained.model, replace(model.neighbours_, shift_nats=0))
    assert np.array_equal(
        np.argsort(flat.score_rows(X), kind="stable"),
        np.argsort(trained.model.score_rows(X), kind="stable"),
    )
