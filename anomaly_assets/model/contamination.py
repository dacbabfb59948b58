"""What of a training sample is not ordinary traffic, and is left out of training.

A campaign that fills 2-5 % of the window masks itself: the forests learn it as common, a
row's surprisal is the share of training rows at least as unusual (so a bot farm of 3 % can
never look rarer than one row in 33), and the operating threshold, a percentile of the
training scores, lands among its rows. The rows the current champion flagged when gold
scored them are left out of the fit, the calibration and the threshold's rows, up to a cap
so that a broken champion cannot empty the sample. ``bench/bench_learning.py`` measures this
against the other options tried.
"""

from dataclasses import dataclass, field

import numpy as np

#: Why a row was left out, as the gate reports it.
CHAMPION_FLAGGED = "flagged by the champion"


@dataclass(frozen=True)
class LeftOut:
    """The rows left out of training and why (reason -> rows); what the champion flagged
    and the share above which its flags are left out."""

    rows: np.ndarray
    flagged_share: float = 0.0
    above: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    capped: bool = False

    @property
    def count(self) -> int:
        return int(self.rows.sum())

    @property
    def share(self) -> float:
        return self.count / max(len(self.rows), 1)

    def describe(self, cap: float) -> str:
        flagged = f"the champion flagged {self.flagged_share:.2%} of the sample"
        if self.flagged_share <= self.above:
            return f"nothing left out: {flagged}, not above {self.above:.2%}"
        if not self.count:
            return f"nothing left out: {flagged}, above {self.above:.2%}, but the cap is {cap:.0%}"
        why = ", ".join(f"{reason} {n:,}" for reason, n in self.reasons.items())
        capped = (
            f"; capped at {cap:.0%}, the highest scores first" if self.capped else ""
        )
        return (
            f"{self.share:.2%} of the sample left out of training ({why}): {flagged}, "
            f"above {self.above:.2%}{capped}"
        )


def trigger(threshold_percentile: float) -> float:
    """The share of flagged rows above which they are left out: twice the alert budget."""
    return 2 * (100 - threshold_percentile) / 100


def leave_out(flagged, scores, max_share: float, above: float) -> LeftOut:
    """The ``flagged`` rows when they are more than ``above`` of all rows, at most
    ``max_share`` of them: those the champion scored highest (``scores``) when there are
    more.

    On a clean window the champion flags about its alert budget's share, half of it
    ordinary rows; leaving those out makes holes in ordinary traffic that its neighbours
    then fall into (bench_learning, a clean window: takeover recall at 1 % FPR 1.00 ->
    0.88, ordinary events flagged 0.20 % -> 1.81 %). A campaign shows as flags well above
    the budget."""
    flagged = np.asarray(flagged, dtype=bool)
    share = float(flagged.mean()) if len(flagged) else 0.0
    if share <= above:
        return LeftOut(np.zeros(len(flagged), dtype=bool), share, above)
    limit = max(int(max_share * len(flagged)), 0)
    capped = int(flagged.sum()) > limit
    if capped:
        candidates = np.flatnonzero(flagged)
        top = candidates[
            np.argsort(-np.asarray(scores, float)[candidates], kind="stable")
        ]
        flagged = np.zeros(len(flagged), dtype=bool)
        flagged[top[:limit]] = True
    count = int(flagged.sum())
    reasons = {CHAMPION_FLAGGED: count} if count else {}
    return LeftOut(flagged, share, above, reasons, capped)
