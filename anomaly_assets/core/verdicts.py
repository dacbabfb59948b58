"""What an analyst's answers about an incident conclude: its latest closing answer
(confirm: a true alert, dismiss: a false one; a reopen withdraws it). Read by the alerts'
suppression and tuning, and by training, which learns from the verdicts."""

from anomaly_assets.core import delta_sql

#: The table of analysts' answers (the triage page writes it: feedback/store.py).
FEEDBACK_TABLE = "analyst_feedback"


def closing_answers(lakehouse) -> list[dict]:
    """The closing answers (confirm, dismiss, reopen) in analyst_feedback, read once per
    run; none when the table was never written."""
    table = lakehouse.read(FEEDBACK_TABLE)
    if table is None:
        return []
    return delta_sql.collect_utc(
        table.filter("action IN ('confirm', 'dismiss', 'reopen')"),
        ["recorded_at", "until"],
    )


def latest_answers(answers: list[dict], since=None) -> dict[str, dict]:
    """Incident id -> its latest closing answer (confirm, dismiss or reopen), among the
    answers recorded after ``since`` (all of them without it)."""
    latest: dict[str, dict] = {}
    for a in sorted(answers, key=lambda a: (a["recorded_at"], a["feedback_id"])):
        if since is not None and a["recorded_at"] <= since:
            continue
        if a["action"] in ("confirm", "dismiss", "reopen") and a["incident_id"]:
            latest[a["incident_id"]] = a
    return latest


def verdicts(answers: list[dict]) -> dict[str, bool]:
    """Incident id -> confirmed (True) or dismissed (False), from its latest closing
    answer; a reopen after it leaves the incident without a verdict."""
    return {
        i: a["action"] == "confirm"
        for i, a in latest_answers(answers).items()
        if a["action"] != "reopen"
    }
