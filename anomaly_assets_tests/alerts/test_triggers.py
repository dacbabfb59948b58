"""What the incidents call for and what noise control lets through (alerts/triggers.py):
one alert per state, escalations only upward, suppressions, snoozes and the hourly rate
limit, each alert not sent recorded with its reason."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.alerts.settings import AlertsSpec
from anomaly_assets.alerts.triggers import (
    incident_candidates,
    incident_state,
    risk_candidates,
    route,
)
from anomaly_assets.feedback.patterns import Pattern
from anomaly_assets.feedback.suppression import Dismissal

NOW = datetime(2026, 11, 1, tzinfo=UTC)
HOOK = {"type": "webhook", "url": "https://example.org/h", "secret_env": "S"}


def incident(n, user="u1", status="CRITICAL", threats=("bot_activity",), ips=()):
    return {
        "incident_id": f"i{n}",
        "user_id": user,
        "status": status,
        "threat_types": list(threats),
        "networks": list(ips),
    }


def spec(**extra) -> AlertsSpec:
    return AlertsSpec.model_validate(
        {
            "channels": {"a": HOOK, "b": HOOK},
            "routes": [{"channels": ["a", "b"], "min_status": "WARNING"}],
            **extra,
        }
    )


states = st.tuples(
    st.sampled_from(["WARNING", "CRITICAL"]),
    st.sets(
        st.sampled_from(["bot_activity", "credential_stuffing", "impossible_travel"])
    ),
)


@given(st.lists(states, min_size=1, max_size=8))
def test_an_incident_is_alerted_when_it_opens_and_only_when_it_escalates(history):
    alerted: dict[str, list[str]] = {}
    for status, threats in history:
        i = incident(1, status=status, threats=sorted(threats))
        (c,) = list(incident_candidates([i], alerted)) or [None]
        before = alerted.get("i1", [])
        if c is not None:
            assert c.state not in before
            if before:  # an update follows the first alert
                assert c.first_state == before[0]
                top = max(
                    ["WARNING", "CRITICAL"].index(s.split(":")[0]) for s in before
                )
                named = {t for s in before for t in s.split(":")[1].split(",") if t}
                assert ["WARNING", "CRITICAL"].index(status) > top or threats - named
            alerted.setdefault("i1", []).append(c.state)
        else:
            assert before  # only an incident alerted before can stay quiet
    # whatever happened, the latest state is covered by an alert at or above it
    assert alerted["i1"][0] == incident_state(
        incident(1, status=history[0][0], threats=sorted(history[0][1]))
    )


def test_a_re_run_calls_for_nothing_new():
    i = incident(1)
    (c,) = incident_candidates([i], {})
    assert list(incident_candidates([i], {"i1": [c.state]})) == []


@given(st.integers(0, 40), st.integers(0, 40), st.integers(1, 20))
def test_the_rate_limit_holds_per_channel_and_the_rest_is_recorded(n, sent, limit):
    candidates = list(incident_candidates([incident(k) for k in range(n)], {}))
    routed = route(spec(rate_limit_per_hour=limit), "", candidates, {"a": sent}, NOW)
    assert len(routed) == 2 * n  # each candidate once per channel
    for channel, already in (("a", sent), ("b", 0)):
        mine = [r for r in routed if r.channel == channel]
        pending = [r for r in mine if r.status == "pending"]
        assert len(pending) == max(0, min(n, limit - already))
        assert all(
            r.status == "rate_limited" and "an hour" in r.reason
            for r in mine
            if r.status != "pending"
        )
    assert len({r.key for r in routed}) == len(routed)


def test_suppressions_and_snoozes_record_their_reason():
    alerts = spec(
        suppressions=[
            {"reason": "service account", "users": ["svc-*"]},
            {"reason": "alice's VPN", "users": ["alice"], "networks": ["10.8.0.0/16"]},
        ],
        snoozes=[
            {"until": "2026-11-02T00:00:00Z", "threat_types": ["impossible_travel"]},
            {"until": "2026-10-01T00:00:00Z", "users": ["bob"]},  # expired
        ],
    )
    incidents = [
        incident(1, user="svc-backup"),
        incident(2, user="alice", ips=["10.8.1.2", "10.8.3.4"]),
        incident(3, user="alice", ips=["10.8.1.2", "203.0.113.9"]),  # partly elsewhere
        incident(4, user="carol", threats=["impossible_travel"]),
        incident(5, user="bob"),
        incident(6, user="alice", ips=["not-an-ip"]),
    ]
    routed = route(alerts, "", list(incident_candidates(incidents, {})), {}, NOW)
    got = {
        r.candidate.subject: (r.status, r.reason) for r in routed if r.channel == "a"
    }
    assert got["i1"] == ("suppressed", "service account")
    assert got["i2"] == ("suppressed", "alice's VPN")
    assert got["i3"][0] == "pending" and got["i6"][0] == "pending"
    assert got["i4"][0] == "snoozed" and "2026-11-02" in got["i4"][1]
    assert got["i5"][0] == "pending"


def test_routes_filter_by_status_and_threat_and_risk_alerts_only_rise():
    alerts = AlertsSpec.model_validate(
        {
            "channels": {"soc": HOOK, "fraud": HOOK},
            "routes": [
                {"channels": ["soc"], "min_status": "CRITICAL"},
                {
                    "channels": ["fraud"],
                    "min_status": "WARNING",
                    "threat_types": ["high_value_purchase"],
                    "min_risk_level": "critical",
                },
            ],
        }
    )
    incidents = [
        incident(1, status="WARNING"),
        incident(2, status="WARNING", threats=["high_value_purchase"]),
        incident(3, status="CRITICAL", threats=["high_value_purchase"]),
    ]
    routed = route(alerts, "", list(incident_candidates(incidents, {})), {}, NOW)
    assert sorted((r.candidate.subject, r.channel) for r in routed) == [
        ("i2", "fraud"),
        ("i3", "fraud"),
        ("i3", "soc"),
    ]
    risk = {
        "user_id": "u1",
        "risk_level": "high",
        "as_of": NOW,
        "threat_contributions": {"bot_activity": 55.0},
    }
    (c,) = risk_candidates([risk], {}, 30)
    assert [r.channel for r in route(alerts, "", [c], {}, NOW)] == ["soc"]
    assert (
        list(risk_candidates([risk], {"u1": [("high", NOW - timedelta(days=3))]}, 30))
        == []
    )
    assert list(
        risk_candidates([risk], {"u1": [("high", NOW - timedelta(days=40))]}, 30)
    )
    higher = {**risk, "risk_level": "critical"}
    assert list(risk_candidates([higher], {"u1": [("high", NOW)]}, 30))


def test_learned_patterns_and_narrow_dismissals_hold_back_only_what_they_cover():
    """A pattern learned across users holds back another user's WARNING incident like
    it on every channel; a user's dismissal holds back that user's incident no more
    severe than the dismissed one; the rest is sent. Suppression comes before the rate
    limit, so what is held back does not use the hour's budget."""
    pattern = Pattern(("bot_activity",), "events_10s", 99.3, 5, 0, 4, 2)
    dismissal = Dismissal(
        "amy",
        frozenset({"bot_activity"}),
        "WARNING",
        NOW + timedelta(days=1),
        "dismissed as a false positive by bo",
        "events_1m",
        99.5,
    )

    def like(n, user, severity, lead):
        i = incident(n, user=user, status="WARNING")
        return i | {"max_severity": severity, "top_features": [lead, "events_1m"]}

    incidents = [
        like(1, "zed", 99.2, "events_10s"),  # the pattern's
        like(2, "zed", 99.4, "events_10s"),  # above its ceiling
        like(3, "amy", 99.4, "events_1m"),  # amy's dismissal
        like(4, "amy", 99.6, "events_1m"),  # more severe than dismissed
        like(5, "bob", 99.0, "events_1m"),  # another lead, another user
    ]
    routed = route(
        spec(rate_limit_per_hour=3),
        "",
        list(incident_candidates(incidents, {})),
        {},
        NOW,
        dismissals=[dismissal],
        patterns=[pattern],
    )
    got = {(r.candidate.subject, r.channel): (r.status, r.reason) for r in routed}
    for channel in "ab":
        assert got["i1", channel] == ("suppressed", pattern.reason)
        assert got["i3", channel] == ("suppressed", dismissal.reason)
        assert {got[i, channel][0] for i in ("i2", "i4", "i5")} == {"pending"}
