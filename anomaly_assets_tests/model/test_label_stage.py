"""The label stage without Dagster or MLflow: verdicts to labelled incidents in time
order, the head that re-weighs detectors, its gate (properties over any decisions), the
stage trained on a sample whose analysts confirm one detector's alerts and dismiss
another's, and its contributions adding up."""

import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.gold.contributions import ThreatExplainer
from anomaly_assets.model.assets import TrainConfig
from anomaly_assets.model.forests import ThreatForests, anomaly_scores
from anomaly_assets.model.label_stage import (
    LABELS,
    Head,
    Incident,
    LabelledForests,
    enough,
    fit_head,
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


def test_the_head_weighs_the_detector_analysts_confirm():
    rng = np.random.default_rng(0)
    S = rng.exponential(1.0, size=(400, 3))
    confirmed = S[:, 1] > S[:, 2]  # detector 1's alerts real, detector 2's not
    head = fit_head(S, confirmed, np.ones(400), penalty=1.0)
    assert head.weights[1] > 0 > head.weights[2]
    # silent labels (a coin) leave the forests' order: z follows the highest surprisal
    coin = rng.random(400) < 0.5
    silent = fit_head(S, coin, np.ones(400), penalty=100.0)
    order = np.corrcoef(
        np.argsort(np.argsort(silent.z(S))), np.argsort(np.argsort(S.max(1)))
    )
    assert order[0, 1] > 0.95 and silent.a >= 0.05


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
    assert "drop 33% of high_value_purchase's alerts" in stage.reason
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


def test_contributions_of_the_stage_add_up_and_credit_the_detectors_it_weighs():
    data, answered = campaign_sample()
    trained = train(data, FEATURES, CONFIG, {})
    model = train_label_stage(trained, data, answered, CONFIG).model
    X = data[list(FEATURES)].to_numpy(float)
    reference = np.median(X, axis=0)
    rows = X[:80]
    shares = model.shares(model.surprisals(rows))
    assert shares.sum(axis=1) == pytest.approx(np.ones(80))
    contrib = ThreatExplainer(model, reference).contributions(rows)
    total = anomaly_scores(model, rows) - anomaly_scores(model, reference[None, :])
    up = total > 0
    assert contrib[up].sum(axis=1) == pytest.approx(total[up], abs=1e-9)
    # the failed-login rows are explained by failed logins
    failed = FEATURES.index("failed_logins_10m")
    assert (contrib[40:80].argmax(axis=1) == failed).mean() >= 0.9
    # a head at its slope's bound with large terms: scores stay below 1 and keep order
    steep = LabelledForests.of(
        trained.model,
        Head(0.05, 0.0, model.head_.mean, model.head_.scale, model.head_.weights * 50),
    )
    z = steep.head_.z(steep.surprisals(X))
    s = steep.score_of(steep.surprisals(X))
    assert z.max() > 40 and s.max() < 1.0
    assert np.array_equal(np.argsort(s, kind="stable"), np.argsort(z, kind="stable"))
    # a plain head (no weights) credits the winner alone, as the forests do
    flat = LabelledForests.of(
        trained.model,
        Head(
            1.0,
            0.0,
            np.zeros(len(model.detectors_)),
            np.ones(len(model.detectors_)),
            np.zeros(len(model.detectors_)),
        ),
    )
    S = flat.surprisals(rows)
    assert np.array_equal(flat.shares(S), ThreatForests.shares(trained.model, S))
