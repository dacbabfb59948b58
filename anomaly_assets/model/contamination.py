"""What of a training sample is not ordinary traffic, and is left out of the forests'
calibration.

A campaign that fills 2-5 % of the window masks itself: a row's surprisal is the share of
training rows at least as unusual, so a bot farm of 3 % can never look rarer than 1 in 33.
The rows the current champion flagged when it scored them are left out of the calibration
(the forests still see them), up to a cap so that a broken champion cannot empty it; the
operating threshold still counts every row, so the alert budget keeps its meaning.
``bench/bench_learning.py`` measures this against the other options tried.
"""

from dataclasses import dataclass, field

import numpy as np

#: Why a row was left out, as the gate reports it.
CHAMPION_FLAGGED = "flagged by the champion"


@dataclass(frozen=True)
class LeftOut:
    """The rows left out of the calibration and why (reason -> rows)."""

    rows: np.ndarray
    reasons: dict[str, int] = field(default_factory=dict)
    capped: bool = False

    @property
    def count(self) -> int:
        return int(self.rows.sum())

    @property
    def share(self) -> float:
        return self.count / max(len(self.rows), 1)

    def describe(self, cap: float) -> str:
        if not self.count:
            return "nothing left out (no champion's flags on these rows)"
        why = ", ".join(f"{reason} {n:,}" for reason, n in self.reasons.items())
        capped = (
            f"; capped at {cap:.0%}, the highest scores first" if self.capped else ""
        )
        return f"{self.share:.2%} left out of the calibration ({why}){capped}"


def leave_out(flagged, scores, max_share: float) -> LeftOut:
    """The ``flagged`` rows, at most ``max_share`` of all rows: those the champion scored
    highest (``scores``) when there are more."""
    flagged = np.asarray(flagged, dtype=bool)
    limit = int(max_share * len(flagged))
    capped = int(flagged.sum()) > limit
    if capped:
        candidates = np.flatnonzero(flagged)
        top = candidates[
            np.argsort(-np.asarray(scores, float)[candidates], kind="stable")
        ]
        flagged = np.zeros(len(flagged), dtype=bool)
        flagged[top[:limit]] = True
    count = int(flagged.sum())
    return LeftOut(flagged, {CHAMPION_FLAGGED: count} if count else {}, capped)
