"""What a dismissal changes next: the alerts of its pattern (the user, and the incident's
threat types, or any when it had none) are suppressed until its window ends, unless the
incident was reopened since."""

import glob
from datetime import datetime


def active_dismissals(rows: list[dict], now: datetime) -> list[dict]:
    """The dismissals still in force: within their window, and not followed by a reopen
    of the same incident."""
    reopened: dict[str, datetime] = {}
    for r in rows:
        if r["action"] == "reopen" and r["incident_id"]:
            at = reopened.get(r["incident_id"])
            reopened[r["incident_id"]] = (
                max(at, r["recorded_at"]) if at else r["recorded_at"]
            )
    out = []
    for r in rows:
        if r["action"] != "dismiss" or r["until"] is None or r["until"] <= now:
            continue
        if reopened.get(r["incident_id"], r["recorded_at"]) > r["recorded_at"]:
            continue
        out.append(r)
    return out


def user_pattern(user_id: str) -> str:
    """``user_id`` as an fnmatch pattern that matches it alone."""
    return glob.escape(user_id)


def reason(row: dict) -> str:
    why = f": {row['reason']}" if row["reason"] else ""
    return (
        f"dismissed as a false positive by {row['analyst']} until "
        f"{row['until']:%Y-%m-%d %H:%M} UTC{why}"
    )
