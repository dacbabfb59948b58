"""What analysts' answers say about each threat type's alerts: the precision at the
current threshold, and a tuned threshold.

An incident's verdict is its latest closing answer (confirm: a true alert, dismiss: a
false one; a reopen withdraws it). Per threat type, over the incidents answered in the
window: precision = confirmed / answered. The tuned threshold is the lowest incident
severity (``max_severity``, a percentile of the training scores) at which the answered
incidents at or above it reach the target precision, but never one that would have
dropped more than ``max_lost`` of the confirmed incidents: tuning only quiets what analysts
dismissed, within that budget of true alerts, and needs ``min_answers`` verdicts first.
"""

from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from anomaly_assets.core.verdicts import latest_answers, verdicts


class Tuning(BaseModel):
    """Thresholds per threat type from analysts' answers (feedback/precision.py): a type
    whose answered incidents fall short of ``target_precision`` alerts only from the
    lowest severity at which they reach it, never leaving more than ``max_lost`` of its
    confirmed incidents unalerted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    target_precision: float = Field(default=0.8, gt=0, le=1)
    min_answers: int = Field(
        default=20, ge=1, description="Verdicts on a type before it is tuned."
    )
    max_lost: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="The alert budget: share of confirmed incidents a tuned threshold "
        "may have left unalerted (0: none).",
    )
    window_days: float = Field(default=30.0, gt=0, description="Answers counted.")


@dataclass(frozen=True)
class ThreatPrecision:
    threat_type: str
    answered: int
    confirmed: int
    precision: float
    #: None: not tuned (too few verdicts, or the target already met, or out of budget)
    threshold: float | None
    precision_at_threshold: float | None
    confirmed_lost: int


def from_answers(rows: list[dict], now, tuning) -> list[ThreatPrecision]:
    """``by_threat`` over the closing answers (any order) recorded in the last
    ``tuning.window_days``, each incident as its latest verdict saw it."""
    latest = latest_answers(rows, now - timedelta(days=tuning.window_days))
    answered = [
        a
        for a in latest.values()
        if a["action"] != "reopen" and a["max_severity"] is not None
    ]
    return by_threat(answered, verdicts(answered), tuning)


def by_threat(
    incidents: list[dict], verdict: dict[str, bool], tuning: Tuning | None = None
) -> list[ThreatPrecision]:
    """Per threat type of the answered ``incidents`` (incident_id, threat_types,
    max_severity), its precision and tuned threshold (module doc)."""
    tuning = tuning or Tuning()
    per: dict[str, list[tuple[float, bool]]] = {}
    for incident in incidents:
        if incident["incident_id"] not in verdict:
            continue
        for t in incident["threat_types"] or ():
            per.setdefault(t, []).append(
                (float(incident["max_severity"]), verdict[incident["incident_id"]])
            )
    out = []
    for threat, rows in sorted(per.items()):
        confirmed = sum(ok for _, ok in rows)
        precision = confirmed / len(rows)
        threshold = at = None
        lost = 0
        if len(rows) >= tuning.min_answers and precision < tuning.target_precision:
            threshold, at, lost = _tune(rows, tuning)
        out.append(
            ThreatPrecision(
                threat, len(rows), confirmed, precision, threshold, at, lost
            )
        )
    return out


def _tune(rows: list[tuple[float, bool]], tuning: Tuning):
    """(threshold, precision at it, confirmed lost) at the lowest cut that reaches the
    target within the budget; (None, None, 0) when no cut does."""
    confirmed = sum(ok for _, ok in rows)
    allowed = int(tuning.max_lost * confirmed)
    for cut in sorted({s for s, _ in rows}):
        kept = [ok for s, ok in rows if s >= cut]
        lost = confirmed - sum(kept)
        if lost > allowed:
            break  # higher cuts lose at least as many
        if kept and sum(kept) / len(kept) >= tuning.target_precision:
            return cut, sum(kept) / len(kept), lost
    return None, None, 0
