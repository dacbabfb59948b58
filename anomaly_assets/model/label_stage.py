"""The label stage: analysts' verdicts re-weigh the threat forests' detectors.

The forests rank by the detector that finds a row most unusual. Analysts' verdicts on
incidents say which detectors' alerts tend to be real here: a logistic head over the seven
detectors' surprisals, fitted on the events of confirmed (1) and dismissed (0) incidents
only, its weights pulled to zero (L2), moves a row's score by a shift in nats:

    z = highest surprisal + (b + sum_d w_d * (s_d - mean_d) / scale_d) / a
    score = (1 + z / (1 + |z|)) / 2

(a logistic score would reach 1.0 in floating point from z of about 37, and a head whose
slope ``a`` sits at its bound multiplies its terms twenty-fold: ties, and a threshold of
1.0 that alerts on all of them).

Where the labels are silent the weights stay near zero and the forests' ranking stands.
Unlabelled rows are not used as negatives: a campaign in the window would teach the head
that its own detector fires on ordinary traffic (``bench/bench_learning.py``: with them,
commuters' bots 0.71 -> 0.37 at 1 % FPR). The head only re-weighs detectors, not features:
a head over the 29 scaled features lifted the third mix's take-overs 0.76 -> 0.91 but
dropped its travel to 0.37 in one trial of three.

The stage is a challenger: ``gate`` compares it with the forests alone on the incidents
answered last (held out by time), and it scores gold only when it is right where the
forests were wrong significantly more often than the reverse.
"""

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from anomaly_assets.core.verdicts import latest_answers
from anomaly_assets.model.forests import ThreatForests

#: Answered incidents a detector must have scored before the stage may quiet its
#: alerts, and the share of a silent detector's alerts it may drop (``gate``): on the
#: third mix, at 120 answers, promotions worse than the forests on the truth went from 4 of
#: 13 to 2 of 8 (bench_learning --labels); at 240 answers, 8 of 35 either way.
SPOKEN = 5
SILENT_LOSS = 0.05
#: What scored a gold row (gold's ``scoring_stage``).
FORESTS = "forests"
LABELS = "forests + analyst labels"


@dataclass(frozen=True)
class Incident:
    """An answered incident: its verdict, when it was given, and its events."""

    incident_id: str
    recorded_at: datetime
    confirmed: bool
    event_ids: tuple[str, ...]


def labelled_incidents(answers: list[dict]) -> list[Incident]:
    """The incidents with a verdict (their latest closing answer: confirm or dismiss) and
    events, in the order the verdicts were given."""
    out = [
        Incident(i, a["recorded_at"], a["action"] == "confirm", tuple(a["event_ids"]))
        for i, a in latest_answers(answers).items()
        if a["action"] != "reopen" and a.get("event_ids")
    ]
    return sorted(out, key=lambda x: (x.recorded_at, x.incident_id))


def split_by_time(
    incidents: list[Incident], held_share: float
) -> tuple[list[Incident], list[Incident]]:
    """(the earlier incidents, to fit on; the last ``held_share`` of them, to gate on)."""
    cut = len(incidents) - max(1, round(held_share * len(incidents)))
    return incidents[:cut], incidents[cut:]


def enough(incidents: list[Incident], minimum: int) -> str | None:
    """Why the forests stand alone on ``incidents`` (None: the stage is tried)."""
    confirmed = sum(x.confirmed for x in incidents)
    dismissed = len(incidents) - confirmed
    if len(incidents) < minimum:
        return f"{len(incidents)} answered incidents, fewer than {minimum}"
    if not confirmed or not dismissed:
        return f"{len(incidents)} answered incidents, all {'confirmed' if confirmed else 'dismissed'}"
    return None


@dataclass(frozen=True)
class Head:
    """The fitted head (module doc): slope ``a`` of the highest surprisal, intercept
    ``b``, and a weight per detector over its standardised surprisal."""

    a: float
    b: float
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray

    def terms(self, surprisals: np.ndarray) -> np.ndarray:
        """Rows x detectors: what each detector's surprisal adds to z, in nats."""
        return (surprisals - self.mean) / self.scale * (self.weights / self.a)

    def z(self, surprisals: np.ndarray) -> np.ndarray:
        return surprisals.max(axis=1) + self.b / self.a + self.terms(surprisals).sum(1)


def fit_head(
    surprisals: np.ndarray, confirmed: np.ndarray, weight: np.ndarray, penalty: float
) -> Head:
    """Weighted logistic regression (each incident weighs 1, spread over its events) of
    the verdicts on the highest surprisal (slope at least 0.05: the forests' order is
    kept) and the standardised detector surprisals, an L2 ``penalty`` on the latter."""
    from scipy.optimize import minimize

    S = np.asarray(surprisals, float)
    # At least 0.1 nats: a detector flat over the labelled rows (rounding noise for a
    # spread) must not turn a weight into a term of tens of nats on a scored row.
    mean, scale = S.mean(0), np.maximum(S.std(0), 0.1)
    P, top = (S - mean) / scale, S.max(1)
    sign = np.where(confirmed, 1.0, -1.0)

    def loss(theta):
        a, b, w = theta[0], theta[1], theta[2:]
        margin = sign * (a * top + b + P @ w)
        grad = -sign * weight * np.exp(-np.logaddexp(0, margin))
        value = (weight * np.logaddexp(0, -margin)).sum() + penalty * (w @ w)
        return value, np.concatenate(
            [[grad @ top, grad.sum()], P.T @ grad + 2 * penalty * w]
        )

    start = np.concatenate([[1.0, 0.0], np.zeros(S.shape[1])])
    bounds = [(0.05, None), (None, None)] + [(None, None)] * S.shape[1]
    theta = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds).x
    return Head(float(theta[0]), float(theta[1]), mean, scale, theta[2:])


class LabelledForests(ThreatForests):
    """The threat forests with a label head: the same detectors and surprisals, scored
    by the head (module doc). Pickled with MLflow like the forests."""

    stage = LABELS

    @classmethod
    def of(cls, forests: ThreatForests, head: Head) -> "LabelledForests":
        model = cls(
            forests.n_estimators, forests.max_samples, forests.seed, forests.features
        )
        model.detectors_, model.head_ = forests.detectors_, head
        return model

    def score_of(self, surprisals: np.ndarray) -> np.ndarray:
        z = self.head_.z(surprisals)
        return (1.0 + z / (1.0 + np.abs(z))) / 2.0

    def shares(self, surprisals: np.ndarray) -> np.ndarray:
        """Rows x detectors, each row summing to 1: the share of the row's credit each
        detector's features take. The detector finding the row most unusual takes its
        surprisal and its own term; the others what their terms add (a detector the
        labels count against takes none)."""
        terms = self.head_.terms(surprisals)
        winner = surprisals.argmax(axis=1)
        rows = np.arange(len(surprisals))
        # Above its labelled mean for a detector weighed up: a term below the mean of a
        # detector weighed down is positive too, on rows that detector finds ordinary.
        parts = np.maximum(terms, 0.0) * (self.head_.weights > 0)
        parts[rows, winner] = np.maximum(
            surprisals[rows, winner] + terms[rows, winner], 0
        )
        total = parts.sum(axis=1, keepdims=True)
        parts[rows, winner] += total[:, 0] <= 0  # nothing positive: the winner's
        return parts / parts.sum(axis=1, keepdims=True)


def stage_of(model) -> str:
    return getattr(model, "stage", FORESTS)


@dataclass(frozen=True)
class Gate:
    """The label stage against the forests alone on the held-out incidents, each decided
    at its model's operating threshold: ``better`` incidents the stage got right and the
    forests wrong, ``worse`` the reverse; ``p_value`` of as many ``better`` by chance."""

    passed: bool
    reason: str
    held_out: int
    better: int
    worse: int
    p_value: float


def silent_losses(
    surprisals: np.ndarray,
    forests_alerts: np.ndarray,
    stage_alerts: np.ndarray,
    answered: np.ndarray,
    names: list[str],
) -> dict[str, float]:
    """Per detector that scored fewer than ``SPOKEN`` of the ``answered`` incidents (the
    detector index of each), the share of the forests' alerts it scored on the training
    sample that the stage would not alert on: what analysts never spoke about."""
    winner = surprisals.argmax(axis=1)
    spoken = np.bincount(answered, minlength=surprisals.shape[1])
    out = {}
    for d, name in enumerate(names):
        mine = forests_alerts & (winner == d)
        if spoken[d] < SPOKEN and mine.any():
            out[name] = float((~stage_alerts[mine]).mean())
    return out


def gate(
    forests_alerts: np.ndarray,
    stage_alerts: np.ndarray,
    confirmed: np.ndarray,
    alpha: float,
    silent: dict[str, float] | None = None,
) -> Gate:
    """McNemar's exact test, one-sided, on the held-out incidents' alert decisions
    (an alert on a confirmed incident or none on a dismissed one is right). Analysts are
    wrong some of the time on both sides of the pair, so only a difference beyond chance
    at ``alpha`` promotes the stage; and never one that drops more than ``SILENT_LOSS`` of
    the alerts of a detector analysts said (almost) nothing about (``silent``, from
    ``silent_losses``): the held-out answers cannot show what it loses there."""
    right_f = np.asarray(forests_alerts) == np.asarray(confirmed)
    right_s = np.asarray(stage_alerts) == np.asarray(confirmed)
    better, worse = int((right_s & ~right_f).sum()), int((right_f & ~right_s).sum())
    n = better + worse
    p = sum(math.comb(n, k) for k in range(better, n + 1)) / 2**n if n else 1.0
    lost = {k: v for k, v in (silent or {}).items() if v > SILENT_LOSS}
    passed = p < alpha and not lost
    reason = (
        f"on the {len(right_f)} incidents answered last: right where the forests were "
        f"wrong {better}, wrong where they were right {worse} (p = {p:.3f} "
        f"{'<' if p < alpha else '>='} {alpha})"
    )
    if lost:
        drops = ", ".join(f"{v:.0%} of {k}'s" for k, v in sorted(lost.items()))
        reason += (
            f"; it would drop {drops} alerts, on which analysts said almost nothing "
            f"(at most {SILENT_LOSS:.0%})"
        )
    return Gate(passed, reason, len(right_f), better, worse, p)
