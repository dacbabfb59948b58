"""What the incident page computes itself: the user's risk over their incidents ends at
the score gold_user_risk holds for them, and each step is the score as of that incident."""

from datetime import UTC, datetime, timedelta

from anomaly_assets.gold.risk import RiskWindow, risk_rows
from anomaly_assets.triage.data import parse_time, risk_history

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_risk_history_ends_at_the_users_risk_row():
    incidents = [
        {
            "incident_id": f"i{k}",
            "user_id": "u",
            "last_seen": T0 + timedelta(days=k),
            "status": "CRITICAL" if k % 2 else "WARNING",
            "threat_types": ["credential_stuffing"],
            "attack_techniques": ["T1110.004"],
        }
        for k in range(5)
    ]
    history = risk_history("u", incidents)
    assert [h["incident_id"] for h in history] == [f"i{k}" for k in range(5)]
    (row,) = risk_rows(incidents, RiskWindow())
    assert history[-1]["risk_score"] == row["risk_score"]
    assert history[0]["risk_score"] < history[-1]["risk_score"]
    assert len(risk_history("u", incidents, points=2)) == 2


def test_time_filters_read_as_utc_and_nonsense_is_no_filter():
    assert parse_time("2026-12-01T10:00") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse_time("nonsense") is None and parse_time("") is None
