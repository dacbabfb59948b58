"""An incident's verdict: its latest closing answer."""

from datetime import UTC, datetime, timedelta

from anomaly_assets.core.verdicts import verdicts

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_latest_closing_answer_is_the_verdict_and_a_reopen_withdraws_it():
    def a(action, incident, minutes):
        return {
            "action": action,
            "incident_id": incident,
            "feedback_id": f"{minutes}",
            "recorded_at": T0 + timedelta(minutes=minutes),
        }

    rows = [
        a("dismiss", "x", 0),
        a("confirm", "x", 5),
        a("confirm", "y", 0),
        a("reopen", "y", 1),
        a("comment", "z", 0),
        a("dismiss", "w", 3),
        a("reopen", "w", 1),
    ]
    assert verdicts(rows) == {"x": True, "w": False}
