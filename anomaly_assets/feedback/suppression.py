"""What a dismissal changes next for its user. While its window lasts, and while it is
the incident's latest verdict (no confirm or reopen after it), it holds back the same
user's incidents that are no more than what was dismissed: threat types among the
dismissed incident's (untyped incidents, when it had none), the same lead feature, its
status or below and its severity or below; and the user's risk alerts while every threat
type driving the risk is a dismissed one. A new threat type, another lead feature or a
more severe incident still alerts.

A dismissal of a pattern that analysts mostly confirm at its severity or below
(``CONTRADICTED``) is set aside: it is more likely an analyst's mistake than a false
positive (feedback/patterns.py learns what dismissals share across users)."""

import glob
from dataclasses import dataclass
from datetime import datetime

from anomaly_assets.core.verdicts import latest_answers
from anomaly_assets.feedback.patterns import Signature, signature
from anomaly_assets.gold.incidents import STATUSES

#: Answers of a dismissal's pattern, at its severity or below, that can contradict it
#: (over half of them confirms).
CONTRADICTED = 5


@dataclass(frozen=True)
class Dismissal:
    user_id: str
    threat_types: frozenset[str]
    status: str
    until: datetime
    reason: str
    lead_feature: str | None = None
    max_severity: float | None = None

    def covers(
        self, user_id: str, threat_types, status: str, top_features=(), severity=None
    ) -> bool:
        if user_id != self.user_id:
            return False
        types = set(threat_types or ())
        same = types <= self.threat_types if self.threat_types else not types
        if not same or (self.threat_types and not types):
            return False
        if self.lead_feature and top_features and top_features[0] != self.lead_feature:
            return False
        if None not in (self.max_severity, severity) and severity > self.max_severity:
            return False
        return STATUSES.index(status) <= STATUSES.index(self.status)

    def covers_risk(self, user_id: str, threat_types) -> bool:
        """A risk alert of the user whose drivers are all dismissed threat types."""
        types = set(threat_types or ())
        return user_id == self.user_id and bool(types) and types <= self.threat_types


def active_dismissals(rows: list[dict], now: datetime) -> list[Dismissal]:
    """The dismissals in force among ``rows`` (closing answers: confirm, dismiss,
    reopen): each incident's latest one, if it is a dismissal whose window is open and
    whose pattern analysts do not mostly confirm."""
    return [
        Dismissal(
            r["user_id"],
            frozenset(r["threat_types"] or ()),
            r["status"] if r.get("status") in STATUSES else STATUSES[-1],
            r["until"],
            reason(r),
            (r.get("top_features") or [None])[0],
            r.get("max_severity"),
        )
        for r, contradicted in _open_dismissals(rows, now)
        if not contradicted
    ]


def set_aside(rows: list[dict], now: datetime) -> list[dict]:
    """The open dismissals that ``active_dismissals`` sets aside as contradicted: for
    analysts to look at again."""
    return [r for r, contradicted in _open_dismissals(rows, now) if contradicted]


def confirmations_to_review(rows: list[dict]) -> list[dict]:
    """Each incident's latest answer that is a confirmation its pattern's answers
    contradict: the label stage learns from confirmations too (model/label_stage.py), so
    a mistaken one is for analysts to look at again."""
    return [r for r, contradicted in _verdicts(rows, "confirm") if contradicted]


def _open_dismissals(rows: list[dict], now: datetime) -> list[tuple[dict, bool]]:
    """Each incident's latest answer that is a dismissal with its window open, and
    whether analysts' answers contradict it."""
    return [
        (r, contradicted)
        for r, contradicted in _verdicts(rows, "dismiss")
        if r["until"] is not None and r["until"] > now
    ]


def _verdicts(rows: list[dict], action: str) -> list[tuple[dict, bool]]:
    """Each incident's latest answer that is ``action``, and whether its pattern's
    answers contradict it."""
    latest = latest_answers(rows)
    by_pattern: dict[Signature, list[dict]] = {}
    for r in latest.values():
        if (sig := _signature(r)) is not None and r["action"] != "reopen":
            by_pattern.setdefault(sig, []).append(r)
    return [
        (r, _contradicted(r, by_pattern.get(_signature(r), [])))
        for r in latest.values()
        if r["action"] == action
    ]


def _contradicted(verdict: dict, same_pattern: list[dict]) -> bool:
    """The pattern's answers at least as far towards the other verdict (a dismissal's
    severity or below, a confirmation's or above; all of them when it has none) are
    ``CONTRADICTED`` or more, over half of them the other verdict: analysts call
    incidents like it attacks (a dismissal), or false alarms (a confirmation)."""
    at = verdict.get("max_severity")
    below = verdict["action"] == "dismiss"
    near = [
        a
        for a in same_pattern
        if at is None
        or (
            a.get("max_severity") is not None
            and (a["max_severity"] <= at if below else a["max_severity"] >= at)
        )
    ]
    other = sum(a["action"] not in (verdict["action"], "reopen") for a in near)
    return len(near) >= CONTRADICTED and other * 2 > len(near)


def _signature(row: dict) -> Signature | None:
    return signature(row["threat_types"], row.get("top_features"))


def user_pattern(user_id: str) -> str:
    """``user_id`` as an fnmatch pattern that matches it alone (snoozes match patterns)."""
    return glob.escape(user_id)


def reason(row: dict) -> str:
    why = f": {row['reason']}" if row["reason"] else ""
    return (
        f"dismissed as a false positive by {row['analyst']} until "
        f"{row['until']:%Y-%m-%d %H:%M} UTC{why}"
    )
