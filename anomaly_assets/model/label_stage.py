"""The label stage: analysts' verdicts move the scores of the rows that resemble them.

The forests rank by the detector that finds a row most unusual (its surprisal, in nats).
The stage adds a vote of the answered events nearest to the row in feature space (each
feature scaled by the training sample's spread): confirmed events (+1) and dismissed ones
(-1), each incident weighing 1 spread over its events, weighted by a Gaussian kernel of
distance, and shrunk towards zero by a prior worth half an incident:

    z = highest surprisal + label_shift * vote,   vote in (-1, 1)
    score = (1 + z / (1 + |z|)) / 2

(a logistic score would reach 1.0 in floating point from z of about 37). Far from every
answered event the vote is zero and the forests' ranking stands: labels only speak where
analysts answered. Unlabelled rows are not votes: a campaign in the window would teach the
stage that its own detector fires on ordinary traffic.

Measured on the third mix (``bench/bench_learning.py --labels``, 100 trials, 10 % of the
answers wrong): a logistic head re-weighing the seven detectors quieted more ordinary
events (1.07 % -> 0.88 % flagged at 240 answers, the vote 0.98 %) but was promoted and
worse than the forests on the truth in 8 of 100 trials: dismissed look-alikes of the
insiders' exports quieted that detector everywhere. The vote with ``label_shift`` 2 was never promoted and worse in 100
trials at 120 or 240 answers (promoted in 11 and 46); with 3, in 2 and 1 of them.

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


#: The vote's prior, in incidents: far from answered events it pulls the vote to zero.
PRIOR = 0.5
#: Scaled features are clipped here: one extreme value must not decide the neighbours.
CLIP = 20.0


@dataclass(frozen=True)
class Neighbours:
    """The answered events in scaled feature space (``center``, ``scale``): their verdicts
    (+1 confirmed, -1 dismissed), weights (1 / their incident's events) and a fitted
    nearest-neighbour index; ``bandwidth`` is the median distance of an answered event to
    its ``k``-th nearest."""

    center: np.ndarray
    scale: np.ndarray
    votes: np.ndarray
    weights: np.ndarray
    index: object
    bandwidth: float
    shift_nats: float

    def vote(self, X) -> np.ndarray:
        """Per row of ``X``, in (-1, 1): its nearest answered events' kernel-weighted
        verdict, shrunk by ``PRIOR``."""
        if len(X) == 0:
            return np.zeros(0)
        distance, nearest = self.index.kneighbors(scaled(X, self.center, self.scale))
        kernel = np.exp(-0.5 * (distance / self.bandwidth) ** 2) * self.weights[nearest]
        return (kernel * self.votes[nearest]).sum(1) / (PRIOR + kernel.sum(1))

    def shift(self, X) -> np.ndarray:
        """What the vote adds to each row's z, in nats."""
        return self.shift_nats * self.vote(X)


def scaled(X, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip((np.asarray(X, float) - center) / scale, -CLIP, CLIP)


def feature_scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) of the training sample's features: the median, and the
    interquartile range as a standard deviation, at least a tenth of the standard
    deviation (a feature zero on most rows still counts)."""
    X = np.asarray(X, float)
    q75, q25 = np.percentile(X, [75, 25], axis=0)
    scale = np.maximum(np.maximum((q75 - q25) / 1.349, 0.1 * X.std(0)), 1e-6)
    return np.median(X, axis=0), scale


def fit_neighbours(
    X: np.ndarray,
    confirmed: np.ndarray,
    weight: np.ndarray,
    scale: tuple[np.ndarray, np.ndarray],
    k: int,
    shift_nats: float,
) -> Neighbours:
    """Index the answered events ``X`` (rows of features) with their verdicts and weights."""
    from sklearn.neighbors import NearestNeighbors

    center, spread = scale
    points = scaled(X, center, spread)
    index = NearestNeighbors(n_neighbors=min(k, len(points))).fit(points)
    distance, _ = index.kneighbors(points)
    return Neighbours(
        center,
        spread,
        np.where(confirmed, 1.0, -1.0),
        np.asarray(weight, float),
        index,
        max(float(np.median(distance[:, -1])), 1e-3),
        shift_nats,
    )


class LabelledForests(ThreatForests):
    """The threat forests with the analysts' vote: the same detectors, surprisals and
    credit (the detector that scored a row explains it), the score moved by the vote
    (module doc). Pickled with MLflow like the forests."""

    stage = LABELS

    @classmethod
    def of(cls, forests: ThreatForests, neighbours: Neighbours) -> "LabelledForests":
        model = cls(
            forests.n_estimators, forests.max_samples, forests.seed, forests.features
        )
        model.detectors_, model.neighbours_ = forests.detectors_, neighbours
        return model

    def __setstate__(self, state: dict) -> None:
        if "neighbours_" not in state:
            raise ValueError(
                "this label stage was registered by an earlier release (a head over the "
                "detectors), which this one cannot score: run train_model_job to fit its "
                "successor, or move the model's champion alias back to the forests' version"
            )
        self.__dict__.update(state)

    def score_rows(self, X, surprisals=None) -> np.ndarray:
        S = self.surprisals(X) if surprisals is None else surprisals
        z = S.max(axis=1) + self.neighbours_.shift(X)
        return (1.0 + z / (1.0 + np.abs(z))) / 2.0


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
