"""analyst_feedback: appends from several writers at once all land and read back with the
deltalake package; which dismissals are in force; a dismissal's user pattern matches that
user alone, whatever characters the id holds."""

import fnmatch
import threading
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.feedback import store
from anomaly_assets.feedback.suppression import (
    active_dismissals,
    confirmations_to_review,
    set_aside,
    user_pattern,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def answer(user: str, action: str = "comment", **extra) -> store.Feedback:
    return store.Feedback(
        analyst="ana", role="analyst", action=action, user_id=user, **extra
    )


def test_concurrent_appends_all_land(tmp_path):
    path = str(tmp_path / store.TABLE)
    ids: list[str] = []
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for k in range(5):
                ids.extend(
                    store.append(path, [answer(f"u{n}-{k}", comment="<b>x</b>")])
                )
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    rows = store.read(path).to_pylist()
    assert sorted(r["feedback_id"] for r in rows) == sorted(ids) and len(ids) == 20
    assert {r["user_id"] for r in rows} == {
        f"u{n}-{k}" for n in range(4) for k in range(5)
    }
    assert all(r["comment"] == "<b>x</b>" for r in rows), "stored as given: data"
    assert store.read(str(tmp_path / "missing")).num_rows == 0


def row(action, incident, at_hours, until_days=None, threats=("bot_activity",)):
    return {
        "feedback_id": f"{incident}-{at_hours}",
        "action": action,
        "incident_id": incident,
        "user_id": "u",
        "analyst": "ana",
        "reason": "",
        "status": "WARNING",
        "threat_types": list(threats),
        "recorded_at": T0 + timedelta(hours=at_hours),
        "until": T0 + timedelta(days=until_days) if until_days is not None else None,
    }


def test_a_dismissal_holds_while_it_is_the_latest_verdict_and_its_window_lasts():
    rows = [
        row("dismiss", "a", 0, 7),
        row("dismiss", "b", 0, 7),
        row("reopen", "b", 5),
        row("dismiss", "c", 0, 1),  # its window ended
        row("reopen", "d", 0),
        row("dismiss", "d", 1, 7),  # dismissed again after a reopen: in force
        row("dismiss", "e", 0, 7),
        row("confirm", "e", 2),  # confirmed after: lifted
        row("comment", "f", 0),
    ]
    now = T0 + timedelta(days=2)
    found = active_dismissals(rows, now)
    assert len(found) == 2 and {d.until for d in found} == {T0 + timedelta(days=7)}
    assert {d.reason for d in found} == {
        "dismissed as a false positive by ana until 2026-12-08 00:00 UTC"
    }


def test_a_dismissal_covers_its_pattern_only():
    (typed,) = active_dismissals([row("dismiss", "a", 0, 7)], T0)
    assert typed.covers("u", ["bot_activity"], "WARNING")
    assert not typed.covers("u", ["bot_activity"], "CRITICAL"), "a higher status"
    assert not typed.covers("u", ["bot_activity", "data_exfiltration"], "WARNING")
    assert not typed.covers("u", [], "WARNING"), "an untyped incident"
    assert not typed.covers("v", ["bot_activity"], "WARNING"), "another user"
    assert typed.covers_risk("u", ["bot_activity"]), "risk from dismissed threats only"
    assert not typed.covers_risk("u", ["bot_activity", "data_exfiltration"])
    (untyped,) = active_dismissals([row("dismiss", "b", 0, 7, threats=())], T0)
    assert untyped.covers("u", [], "WARNING")
    assert not untyped.covers("u", ["bot_activity"], "WARNING")


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_a_users_pattern_matches_that_user_alone(user, other):
    pattern = user_pattern(user)
    assert fnmatch.fnmatchcase(user, pattern)
    assert fnmatch.fnmatchcase(other, pattern) == (other == user)


def test_a_dismissal_covers_no_more_than_what_was_dismissed():
    """With the incident's severity and lead feature recorded (the triage page records
    both), a more severe incident or one another feature drives still alerts."""
    dismissed = row("dismiss", "a", 0, 7) | {
        "max_severity": 99.3,
        "top_features": ["events_10s", "events_1m"],
    }
    (d,) = active_dismissals([dismissed], T0)
    lead = ["events_10s", "duration_ms_log"]
    assert d.covers("u", ["bot_activity"], "WARNING", lead, 99.3)
    assert d.covers("u", ["bot_activity"], "WARNING", lead, 99.1)
    assert not d.covers("u", ["bot_activity"], "WARNING", lead, 99.5), "more severe"
    assert not d.covers("u", ["bot_activity"], "WARNING", ["duration_ms_log"], 99.1)


def test_a_dismissal_of_a_pattern_analysts_mostly_confirm_is_set_aside():
    """Five answers on bot_activity led by events_10s, three confirms: the dismissals of
    that pattern are set aside for review (likely mistakes), another pattern's hold."""
    lead = {"max_severity": 99.5, "top_features": ["events_10s"]}
    rows = [
        row("confirm" if k < 3 else "dismiss", f"b{k}", k, 7) | lead for k in range(5)
    ]
    other = row("dismiss", "c", 0, 7) | lead | {"top_features": ["events_1m"]}
    now = T0 + timedelta(days=1)
    assert [d.lead_feature for d in active_dismissals(rows + [other], now)] == [
        "events_1m"
    ]
    assert {r["incident_id"] for r in set_aside(rows + [other], now)} == {"b3", "b4"}
    # four answers are too few to contradict a dismissal
    assert len(active_dismissals(rows[1:], now)) == 2 and not set_aside(rows[1:], now)


def test_a_confirmation_of_a_pattern_analysts_mostly_dismiss_is_for_review():
    """Four dismissals of bot_activity led by events_10s at or above a confirmation's
    severity contradict it; dismissals below it do not (the confirmed one was worse)."""
    lead = {"top_features": ["events_10s"]}
    confirmed = row("confirm", "a", 0, 7) | lead | {"max_severity": 99.2}
    above = [
        row("dismiss", f"d{k}", k, 7) | lead | {"max_severity": 99.3} for k in range(4)
    ]
    below = [r | {"max_severity": 99.1} for r in above]
    assert [r["incident_id"] for r in confirmations_to_review([confirmed, *above])] == [
        "a"
    ]
    assert not confirmations_to_review([confirmed, *below])
    assert not confirmations_to_review([confirmed, *above[:3]])  # too few


def test_an_older_releases_table_gains_the_new_column(tmp_path):
    """A table written before top_features: the next append adds the column, and the
    older rows read it as null."""
    from deltalake import write_deltalake

    path = str(tmp_path / store.TABLE)
    older = store.SCHEMA.remove(store.SCHEMA.get_field_index("top_features"))
    row = {
        "feedback_id": "old",
        "recorded_at": T0,
        "analyst": "ana",
        "action": "dismiss",
    }
    write_deltalake(path, pa.Table.from_pylist([row], schema=older))
    store.append(path, [answer("u", "dismiss", top_features=["events_10s"])])
    rows = {r["feedback_id"]: r for r in store.read(path).to_pylist()}
    assert rows["old"]["top_features"] is None
    assert [r["top_features"] for k, r in rows.items() if k != "old"] == [
        ["events_10s"]
    ]
