"""Each threat type's precision from analysts' verdicts, and the threshold tuned from them:
properties over any verdicts (hypothesis), and the alert routing that applies it."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.alerts.settings import AlertsSpec
from anomaly_assets.alerts.triggers import Candidate, route
from anomaly_assets.feedback.precision import Tuning, by_threat

T0 = datetime(2026, 12, 1, tzinfo=UTC)
answered = st.lists(
    st.tuples(st.floats(99.0, 100.0, allow_nan=False), st.booleans()),
    min_size=1,
    max_size=60,
)
tunings = st.builds(
    Tuning,
    target_precision=st.sampled_from([0.5, 0.8, 0.9]),
    min_answers=st.integers(1, 10),
    max_lost=st.sampled_from([0.0, 0.1, 0.3]),
)


def incidents_of(rows):
    incidents = [
        {"incident_id": f"i{k}", "threat_types": ["bot_activity"], "max_severity": s}
        for k, (s, _) in enumerate(rows)
    ]
    return incidents, {f"i{k}": ok for k, (_, ok) in enumerate(rows)}


@given(answered, tunings)
def test_a_tuned_threshold_meets_the_target_within_the_budget_and_is_the_lowest(
    rows, tuning
):
    incidents, verdict = incidents_of(rows)
    (p,) = by_threat(incidents, verdict, tuning)
    confirmed = sum(ok for _, ok in rows)
    assert (p.answered, p.confirmed) == (len(rows), confirmed)
    assert p.precision == confirmed / len(rows)
    allowed = int(tuning.max_lost * confirmed)

    def at(cut):
        kept = [ok for s, ok in rows if s >= cut]
        return kept, confirmed - sum(kept)

    def acceptable(cut):
        kept, lost = at(cut)
        return (
            kept
            and sum(kept) / len(kept) >= tuning.target_precision
            and lost <= allowed
        )

    if len(rows) < tuning.min_answers or p.precision >= tuning.target_precision:
        assert p.threshold is None
        return
    if p.threshold is None:
        assert not any(acceptable(s) for s, _ in rows), "a cut was there to find"
        return
    kept, lost = at(p.threshold)
    assert acceptable(p.threshold) and p.confirmed_lost == lost
    assert p.precision_at_threshold == sum(kept) / len(kept)
    assert not any(acceptable(s) for s, _ in rows if s < p.threshold), "the lowest"
    if tuning.max_lost == 0:
        assert all(s >= p.threshold for s, ok in rows if ok), "no confirmed one lost"


def test_routing_holds_back_incidents_below_their_types_tuned_threshold():
    rows = [(99.1, False)] * 15 + [(99.2, False)] * 5 + [(99.8, True)] * 5
    incidents, verdict = incidents_of(rows)
    (tuned,) = by_threat(
        incidents, verdict, Tuning(target_precision=0.8, min_answers=20, max_lost=0.0)
    )
    assert tuned.threshold == 99.8 and tuned.precision == 0.2
    spec = AlertsSpec.model_validate(
        {
            "channels": {
                "h": {
                    "type": "webhook",
                    "url": "http://127.0.0.1:9/h",
                    "secret_env": "X",
                }
            },
            "routes": [{"channels": ["h"], "min_status": "WARNING"}],
        }
    )

    def candidate(subject, severity, threats):
        return Candidate(
            "incident",
            subject,
            "u",
            f"WARNING:{subject}",
            "WARNING",
            threats,
            facts={"max_severity": severity},
        )

    routed = route(
        spec,
        "",
        [
            candidate("low", 99.5, ("bot_activity",)),
            candidate("high", 99.9, ("bot_activity",)),
            candidate("mixed", 99.5, ("bot_activity", "data_exfiltration")),
            candidate("untyped", 99.0, ()),
        ],
        {},
        T0,
        thresholds={"bot_activity": tuned},
    )
    got = {r.candidate.subject: (r.status, r.reason) for r in routed}
    assert got["low"][0] == "suppressed"
    assert got["low"][1].startswith(
        "below the threshold tuned from analysts' answers: bot_activity alerts from "
        "severity 99.80 (precision 1.00 there, 0.20 over all 25 answers)"
    )
    assert {k: v[0] for k, v in got.items() if k != "low"} == {
        "high": "pending",
        "mixed": "pending",
        "untyped": "pending",
    }
