"""Patterns learned from dismissals across users: what a learned ceiling guarantees, that
a few wrong answers neither teach nor undo one, and what a pattern covers."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.feedback.patterns import Learning, learn, mistaken

T0 = datetime(2026, 12, 1, tzinfo=UTC)
TYPES = ["account_takeover"]
LEAD = ["value_after_risky_access", "device_novelty", "device_rarity"]


def verdict(k, action, severity, user=None, at_hours=0, types=TYPES, top=LEAD):
    return {
        "feedback_id": f"f{k:04d}",
        "recorded_at": T0 + timedelta(hours=at_hours),
        "incident_id": f"i{k}",
        "action": action,
        "user_id": user or f"u{k}",
        "threat_types": list(types),
        "top_features": list(top),
        "max_severity": severity,
        "analyst": "ana",
        "until": T0 + timedelta(days=7) if action == "dismiss" else None,
    }


answers = st.lists(
    st.tuples(
        st.floats(99.0, 100.0, allow_nan=False),
        st.booleans(),
        st.sampled_from(["u1", "u2", "u3", "u4"]),
    ),
    max_size=40,
)
rules = st.builds(
    Learning,
    min_dismissals=st.integers(1, 5),
    min_users=st.integers(1, 3),
    max_precision=st.sampled_from([0.0, 0.2, 0.5]),
    answer_error=st.sampled_from([0.05, 0.1, 0.2]),
    confidence=st.sampled_from([0.9, 0.999]),
)


@given(answers, rules)
def test_a_learned_ceiling_meets_every_rule_and_is_the_highest_that_does(rows, r):
    verdicts = [
        verdict(k, "confirm" if ok else "dismiss", s, u)
        for k, (s, ok, u) in enumerate(rows)
    ]
    found = learn(verdicts, T0 + timedelta(days=1), r)

    tries = len(rows)  # the scan may end after any answer

    def passes(cut):
        region = [(s, ok, u) for s, ok, u in rows if s <= cut]
        dismissed = [a for a in region if not a[1]]
        return (
            len(dismissed) >= r.min_dismissals
            and len({u for _, _, u in dismissed}) >= r.min_users
            and (len(region) - len(dismissed)) / len(region) <= r.max_precision
            and tries * mistaken(len(dismissed), len(region), r.answer_error)
            < 1 - r.confidence
        )

    cuts = {s for s, ok, _ in rows if not ok}  # every severity a dismissal holds
    best = max((c for c in cuts if passes(c)), default=None)
    if best is None:
        assert found == []
    else:
        (p,) = found
        region = [(ok, u) for s, ok, u in rows if s <= best]
        assert p.ceiling == best and p.lead_feature == LEAD[0]
        assert (p.dismissed, p.confirmed, p.users) == (
            sum(not ok for ok, _ in region),
            sum(ok for ok, _ in region),
            len({u for ok, u in region if not ok}),
        )
        assert p.covers(TYPES, LEAD, "WARNING", best)
        assert not p.covers(TYPES, LEAD, "WARNING", best + 0.001)


@given(
    st.lists(st.floats(99.0, 100.0, allow_nan=False), min_size=1, max_size=60),
    st.sets(st.integers(0, 59), max_size=3),
)
def test_three_wrong_dismissals_of_a_pattern_of_attacks_teach_nothing(
    severities, wrong
):
    """However the mistakes fall (even on the lowest severities), an analyst wrong
    three times about attacks of one pattern does not silence it at the defaults."""
    rows = [
        verdict(k, "dismiss" if k in wrong else "confirm", s)
        for k, s in enumerate(severities)
    ]
    assert learn(rows, T0 + timedelta(days=1)) == []


def test_false_positives_of_several_users_teach_their_pattern_and_no_more():
    """Six dismissed take-overs led by value_after_risky_access (99.0-99.4, five users),
    one of them wrongly confirmed, and attacks of the kind confirmed at 99.7 and above:
    the pattern is learned up to the highest dismissal below them."""
    severities = [99.0, 99.05, 99.1, 99.2, 99.3, 99.4]
    rows = [
        verdict(k, "dismiss", s, user=f"u{k % 5}") for k, s in enumerate(severities)
    ]
    rows += [verdict(10, "confirm", 99.15)]  # the analyst's mistake
    rows += [verdict(20 + k, "confirm", 99.7 + k / 10) for k in range(3)]
    (p,) = learn(rows, T0 + timedelta(days=1))
    assert (p.ceiling, p.dismissed, p.confirmed, p.users) == (99.4, 6, 1, 5)
    assert p.covers(["account_takeover"], LEAD, "WARNING", 99.25)
    assert not p.covers(["account_takeover"], LEAD, "WARNING", 99.5), "more severe"
    assert not p.covers(["account_takeover"], LEAD, "CRITICAL", 99.25)
    assert not p.covers(["account_takeover"], ["device_novelty"], "WARNING", 99.2)
    assert not p.covers(
        ["account_takeover", "impossible_travel"], LEAD, "WARNING", 99.2
    )
    assert "6 dismissed about 5 users by 1 analyst, 1 confirmed" in p.reason

    # one user's dismissals alone, or answers from before the window, teach nothing
    one_user = [dict(r, user_id="u0") for r in rows]
    assert learn(one_user, T0 + timedelta(days=1)) == []
    assert learn(rows, T0 + timedelta(days=31)) == []
    # a reopen withdraws a dismissal: five are left, still enough
    reopened = rows + [
        dict(
            rows[5],
            action="reopen",
            feedback_id="z",
            recorded_at=T0 + timedelta(hours=1),
        )
    ]
    (q,) = learn(reopened, T0 + timedelta(days=1))
    assert (q.ceiling, q.dismissed) == (99.3, 5)


def test_answers_without_the_incidents_features_teach_no_pattern():
    """Rows from before the table recorded top_features (an older release's)."""
    rows = [verdict(k, "dismiss", 99.0 + k / 10, top=[]) for k in range(8)]
    rows += [dict(verdict(9 + k, "dismiss", 99.0), top_features=None) for k in range(8)]
    assert learn(rows, T0 + timedelta(days=1)) == []


def test_wrong_dismissals_of_a_pattern_analysts_mostly_confirm_teach_nothing():
    """What a week of simulated answers met: the 4 lowest of 45 high-value purchases
    dismissed (attacks, the analyst wrong), the rest confirmed. Over the 45 places a scan
    may cut, so many mistakes at the low end are likely enough that nothing is learned."""
    severities = [99.0 + k / 50 for k in range(45)]
    rows = [
        verdict(k, "dismiss" if k < 4 else "confirm", s, types=["x"])
        for k, s in enumerate(severities)
    ]
    assert mistaken(4, 4, 0.1) < 1 - Learning().confidence, "alone it would pass"
    assert learn(rows, T0 + timedelta(days=1)) == []


def test_a_tie_at_the_ceiling_and_a_dismissals_window_count():
    """Ten dismissals and a wrong confirm at one severity (severities are clamped at 100,
    so ties happen) teach a ceiling there; once the dismissals' windows are over they
    teach nothing, whatever the learning window."""
    rows = [verdict(k, "dismiss", 100.0, user=f"u{k % 3}") for k in range(10)]
    rows += [verdict(10, "confirm", 100.0)]
    (p,) = learn(rows, T0 + timedelta(days=1))
    assert (p.ceiling, p.dismissed, p.confirmed, p.analysts) == (100.0, 10, 1, 1)
    assert learn(rows, T0 + timedelta(days=8)) == [], "dismissed for 7 days"
