"""What a dismissal changes next. While its window lasts, and while it is the incident's
latest verdict (no confirm or reopen after it), it holds back the alerts of its pattern:
the same user's incidents whose threat types are among the dismissed incident's (untyped
incidents, when it had none), at its status or below, and the user's risk alerts while
every threat type driving the risk is a dismissed one. A new threat type or a higher
status still alerts."""

import glob
from dataclasses import dataclass
from datetime import datetime

from anomaly_assets.gold.incidents import STATUSES


@dataclass(frozen=True)
class Dismissal:
    user_id: str
    threat_types: frozenset[str]
    status: str
    until: datetime
    reason: str

    def covers(self, user_id: str, threat_types, status: str) -> bool:
        if user_id != self.user_id:
            return False
        types = set(threat_types or ())
        same = types <= self.threat_types if self.threat_types else not types
        if not same or (self.threat_types and not types):
            return False
        return STATUSES.index(status) <= STATUSES.index(self.status)

    def covers_risk(self, user_id: str, threat_types) -> bool:
        """A risk alert of the user whose drivers are all dismissed threat types."""
        types = set(threat_types or ())
        return user_id == self.user_id and bool(types) and types <= self.threat_types


def active_dismissals(rows: list[dict], now: datetime) -> list[Dismissal]:
    """The dismissals in force among ``rows`` (closing answers: confirm, dismiss,
    reopen): each incident's latest one, if it is a dismissal whose window is open."""
    latest: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (r["recorded_at"], r["feedback_id"])):
        if r["incident_id"] and r["action"] in ("confirm", "dismiss", "reopen"):
            latest[r["incident_id"]] = r
    return [
        Dismissal(
            r["user_id"],
            frozenset(r["threat_types"] or ()),
            r["status"] if r.get("status") in STATUSES else STATUSES[-1],
            r["until"],
            reason(r),
        )
        for r in latest.values()
        if r["action"] == "dismiss" and r["until"] is not None and r["until"] > now
    ]


def user_pattern(user_id: str) -> str:
    """``user_id`` as an fnmatch pattern that matches it alone (snoozes match patterns)."""
    return glob.escape(user_id)


def reason(row: dict) -> str:
    why = f": {row['reason']}" if row["reason"] else ""
    return (
        f"dismissed as a false positive by {row['analyst']} until "
        f"{row['until']:%Y-%m-%d %H:%M} UTC{why}"
    )
