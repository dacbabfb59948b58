"""Patterns of false positives, learned from analysts' verdicts across users.

A false positive rarely comes back for the same user, but its kind does: the same threat
types driven by the same lead feature (the one most often among its events' top
features), at the low end of the severities, where the attacks of that kind are rare. A
pattern's verdicts (each incident's latest closing answer in the window) teach it a
severity ceiling S, the highest severity holding a dismissal at which the answered
incidents of the pattern at or below S

- hold ``min_dismissals`` dismissals or more, about ``min_users`` users or more;
- are confirmed at most ``max_precision`` of the time;
- and are not the pattern's attacks dismissed by mistake: were every one of them an attack
  that analysts dismiss ``answer_error`` of the time, so many dismissals would happen with
  a probability under ``1 - confidence``, once multiplied by the pattern's answers (the
  scan may cut after any of them, and scanning finds chance runs of mistakes).

Only dismissals whose window is open teach; confirms count over the learning window.

Its WARNING incidents at or below S then raise no alert. A more severe or CRITICAL one
still alerts, and so does every other pattern. The rules are written for an analyst who
is wrong now and then: a few wrong dismissals of a pattern analysts mostly confirm fail
the test, and a wrong confirm among many dismissals does not undo what they taught.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from math import comb
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from anomaly_assets.core.verdicts import latest_answers


class Learning(BaseModel):
    """Patterns of false positives learned from dismissals across users
    (feedback/patterns.py): an incident's threat types and lead feature, whose WARNING
    incidents up to a severity ceiling analysts dismissed raise no alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    min_dismissals: int = Field(default=3, ge=1)
    min_users: int = Field(
        default=2, ge=1, description="Distinct users among those dismissals."
    )
    max_precision: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Highest share of confirmed incidents below the ceiling.",
    )
    answer_error: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="How often analysts are assumed to answer wrongly.",
    )
    confidence: float = Field(
        default=0.9995,
        gt=0.5,
        lt=1,
        description="That the dismissals are not attacks dismissed by mistake (at the "
        "defaults, 3 dismissals and no confirm are never enough).",
    )
    window_days: float = Field(default=30.0, gt=0, description="Answers counted.")


Signature = tuple[tuple[str, ...], str]


def signature(threat_types, top_features) -> Signature | None:
    """An incident's pattern: its threat types and lead feature (None without one)."""
    if not top_features:
        return None
    return tuple(sorted(threat_types or ())), top_features[0]


@dataclass(frozen=True)
class Pattern:
    threat_types: tuple[str, ...]
    lead_feature: str
    ceiling: float
    dismissed: int
    confirmed: int
    users: int
    analysts: int

    def covers(self, threat_types, top_features, status: str, severity) -> bool:
        return (
            status == "WARNING"
            and severity is not None
            and severity <= self.ceiling
            and signature(threat_types, top_features)
            == (self.threat_types, self.lead_feature)
        )

    @property
    def reason(self) -> str:
        kind = ", ".join(self.threat_types) or "untyped"
        return (
            f"a pattern analysts dismissed: {kind} incidents led by {self.lead_feature} "
            f"up to severity {self.ceiling:.2f} ({self.dismissed} dismissed about "
            f"{self.users} users by {self.analysts} analyst"
            f"{'s' if self.analysts > 1 else ''}, {self.confirmed} confirmed)"
        )


def mistaken(dismissed: int, answered: int, error: float) -> float:
    """P(at least ``dismissed`` of ``answered`` attacks dismissed), each with ``error``."""
    return sum(
        comb(answered, k) * error**k * (1 - error) ** (answered - k)
        for k in range(dismissed, answered + 1)
    )


def learn(
    rows: list[dict], now: datetime, rules: Learning | None = None
) -> list[Pattern]:
    """The patterns ``rows`` (closing answers, any order, with threat_types, top_features,
    max_severity, user_id, analyst, until) teach (module doc). A dismissal whose window
    is over no longer teaches; a confirm counts for the whole learning window. None when
    learning is off."""
    rules = rules or Learning()
    if not rules.enabled:
        return []
    since = now - timedelta(days=rules.window_days)
    by_pattern: dict[Signature, list[Answer]] = {}
    for r in latest_answers(rows, since).values():
        sig = signature(r["threat_types"], r.get("top_features"))
        if r["action"] == "reopen" or sig is None or r.get("max_severity") is None:
            continue
        confirmed = r["action"] == "confirm"
        if not confirmed and (r.get("until") is None or r["until"] <= now):
            continue
        answer = Answer(float(r["max_severity"]), confirmed, r["user_id"], r["analyst"])
        by_pattern.setdefault(sig, []).append(answer)
    patterns = []
    for (types, lead), answers in sorted(by_pattern.items()):
        found = _ceiling(sorted(answers), rules)
        if found is not None:
            patterns.append(Pattern(types, lead, *found))
    return patterns


class Answer(NamedTuple):
    severity: float
    confirmed: bool
    user_id: str
    analyst: str


def _ceiling(answers: list[Answer], rules: Learning):
    """(ceiling, dismissed, confirmed, users, analysts) at the highest severity holding a
    dismissal where the answers at or below it pass the rules; None when none does."""
    best = None
    # The scan may end after any answer: the bound on mistakes covers every such cut.
    tries = len(answers)
    for severity in sorted({a.severity for a in answers if not a.confirmed}):
        region = [a for a in answers if a.severity <= severity]
        dismissed = [a for a in region if not a.confirmed]
        users = len({a.user_id for a in dismissed})
        confirmed = len(region) - len(dismissed)
        if (
            len(dismissed) >= rules.min_dismissals
            and users >= rules.min_users
            and confirmed / len(region) <= rules.max_precision
            and tries * mistaken(len(dismissed), len(region), rules.answer_error)
            < 1 - rules.confidence
        ):
            analysts = len({a.analyst for a in dismissed})
            best = (severity, len(dismissed), confirmed, users, analysts)
    return best
