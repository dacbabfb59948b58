"""analyst_feedback: appends from several writers at once all land and read back with the
deltalake package; which dismissals are in force; a dismissal's user pattern matches that
user alone, whatever characters the id holds."""

import fnmatch
import threading
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.feedback import store
from anomaly_assets.feedback.suppression import active_dismissals, user_pattern

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


def row(action, incident, at_hours, until_days=None):
    return {
        "action": action,
        "incident_id": incident,
        "recorded_at": T0 + timedelta(hours=at_hours),
        "until": T0 + timedelta(days=until_days) if until_days is not None else None,
    }


def test_dismissals_in_force_end_with_their_window_or_a_reopen():
    rows = [
        row("dismiss", "a", 0, 7),
        row("dismiss", "b", 0, 7),
        row("reopen", "b", 5),
        row("dismiss", "c", 0, 1),
        row("reopen", "d", 0),
        row("dismiss", "d", 1, 7),  # dismissed again after a reopen: in force
        row("comment", "e", 0),
    ]
    now = T0 + timedelta(days=2)
    assert [r["incident_id"] for r in active_dismissals(rows, now)] == ["a", "d"]


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_a_users_pattern_matches_that_user_alone(user, other):
    pattern = user_pattern(user)
    assert fnmatch.fnmatchcase(user, pattern)
    assert fnmatch.fnmatchcase(other, pattern) == (other == user)
