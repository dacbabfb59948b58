"""The user risk score: what its docstring promises, on any incidents (gold/risk.py)."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.gold.risk import (
    LEVELS,
    UNCLASSIFIED,
    RiskWindow,
    level_of,
    risk_rows,
    user_risk,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = RiskWindow(window_days=30, half_life_days=7)
THREATS = ["credential_stuffing", "bot_activity", "data_exfiltration"]


def _incident(n, days_before, status="CRITICAL", threats=(), techniques=()):
    return {
        "incident_id": f"i{n}",
        "user_id": "u1",
        "last_seen": T0 - timedelta(days=days_before),
        "status": status,
        "threat_types": list(threats),
        "attack_techniques": list(techniques),
    }


incidents = st.lists(
    st.builds(
        lambda n, days, status, threats: _incident(n, days, status, threats),
        st.integers(0, 10**6),
        st.floats(0, 60, allow_nan=False),
        st.sampled_from(["CRITICAL", "WARNING"]),
        st.lists(st.sampled_from(THREATS), unique=True, max_size=2),
    ),
    min_size=1,
    max_size=25,
    unique_by=lambda i: i["incident_id"],
)


@given(incidents)
def test_the_score_is_bounded_its_level_and_its_contributions_add_up(rows):
    risk = user_risk("u1", rows, WINDOW)
    assert 0 <= risk["risk_score"] < 100
    assert risk["risk_level"] == level_of(risk["risk_score"])
    assert sum(risk["threat_contributions"].values()) == pytest.approx(
        risk["risk_score"], abs=1e-9
    )
    in_window = [
        r for r in rows if (risk["as_of"] - r["last_seen"]).total_seconds() < 30 * 86400
    ]
    assert risk["incident_count"] == len(in_window)
    assert risk["as_of"] == max(r["last_seen"] for r in rows)


@given(incidents, st.randoms(use_true_random=False))
def test_the_order_incidents_arrive_in_changes_nothing(rows, rnd):
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert user_risk("u1", shuffled, WINDOW) == user_risk("u1", rows, WINDOW)


@given(incidents, st.floats(0, 60), st.sampled_from(["CRITICAL", "WARNING"]))
def test_one_more_incident_never_lowers_the_score(rows, days, status):
    """Adding an incident no newer than the latest (the decay's reference stays) can only
    raise the score, however the p-series re-ranks the others."""
    newest = max(r["last_seen"] for r in rows)
    extra = {**_incident(-1, 0, status), "last_seen": newest - timedelta(days=days)}
    before = user_risk("u1", rows, WINDOW)["risk_score"]
    assert user_risk("u1", [*rows, extra], WINDOW)["risk_score"] >= before - 1e-12


def test_the_documented_levels():
    """The examples the module's docstring gives."""

    def score(*statuses, days=0.0):
        rows = [_incident(n, days * n, s) for n, s in enumerate(statuses)]
        return user_risk("u1", rows, WINDOW)

    assert score("WARNING")["risk_level"] == "low"
    assert round(score("WARNING")["risk_score"], 1) == 19.1
    assert round(score("CRITICAL")["risk_score"], 1) == 38.3
    assert score("CRITICAL")["risk_level"] == "moderate"
    assert score("CRITICAL", "CRITICAL")["risk_level"] == "high"
    assert score(*["CRITICAL"] * 5)["risk_level"] == "high"
    assert score(*["CRITICAL"] * 7)["risk_level"] == "critical"
    # a week apart: the older one's points halve, a month apart: it is out of the window
    assert score("CRITICAL", "CRITICAL", days=7)["risk_score"] == pytest.approx(
        (100 + 50 / 2**1.5) / 2.612375348685488
    )
    assert score("CRITICAL", "CRITICAL", days=31)["incident_count"] == 1
    assert [name for name, _ in LEVELS] == ["critical", "high", "moderate", "low"]


def test_contributions_split_an_incident_among_its_threats():
    rows = [
        _incident(1, 0, threats=["credential_stuffing", "bot_activity"]),
        _incident(2, 0, "WARNING", techniques=["T1078"]),
    ]
    risk = user_risk("u1", rows, WINDOW)
    first = 100 / 2.612375348685488
    assert risk["threat_contributions"]["credential_stuffing"] == pytest.approx(
        first / 2
    )
    assert risk["threat_contributions"]["bot_activity"] == pytest.approx(first / 2)
    assert risk["threat_contributions"][UNCLASSIFIED] == pytest.approx(
        50 / 2**1.5 / 2.612375348685488
    )
    assert risk["top_incident_ids"] == ["i1", "i2"]
    assert risk["attack_techniques"] == ["T1078"]


def test_rows_per_user():
    rows = [
        {**_incident(n, n), "user_id": u} for n, u in enumerate(["b", "a", "b", "c"])
    ]
    random.Random(1).shuffle(rows)
    got = risk_rows(rows, WINDOW)
    assert [r["user_id"] for r in got] == ["a", "b", "c"]
    assert [r["incident_count"] for r in got] == [1, 2, 1]
