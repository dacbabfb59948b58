"""gold_model_monitoring: one row per scoring day and model version, for a dashboard.

Each gold step folds its scorings into the day's row of the model version it used: counts
(predictions, flagged, CRITICAL), the exact sum of scores and a 1,000-bin histogram of them,
from which the mean and the p95 (to 0.001) come, and the scoring seconds. A row remembers
the batches folded into it, so a retried step that already folded its batches changes
nothing. A re-scored event (a correction) counts as a new prediction: the table monitors
the scoring, not the events.
"""

from dataclasses import dataclass, field
from datetime import date

#: Scores are in (0, 1]: bin i holds (i / BINS, (i + 1) / BINS].
BINS = 1000
MONITORING_SCHEMA = (
    "day date, model_name string, model_version string, predictions bigint, "
    "flagged bigint, critical bigint, flagged_rate double, mean_score double, "
    "p95_score double, score_sum double, score_histogram array<bigint>, "
    "scoring_seconds double, batch_ids array<string>"
)


@dataclass
class Scorings:
    """What one gold step scored with one model version."""

    predictions: int = 0
    flagged: int = 0
    critical: int = 0
    score_sum: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * BINS)
    seconds: float = 0.0


def score_bin(column: str = "anomaly_score"):
    """Spark column: the histogram bin of a score."""
    from pyspark.sql import functions as F

    return F.least(
        F.greatest(F.ceil(F.col(column) * BINS) - 1, F.lit(0)), F.lit(BINS - 1)
    ).cast("int")


def summarise(scored) -> Scorings:
    """The step's scorings from ``scored`` gold rows, in one Spark aggregation."""
    from pyspark.sql import functions as F

    out = Scorings()
    rows = (
        scored.groupBy("status", score_bin().alias("bin"))
        .agg(F.count(F.lit(1)).alias("n"), F.sum("anomaly_score").alias("s"))
        .collect()
    )
    for r in rows:
        out.predictions += r["n"]
        out.score_sum += r["s"] or 0.0
        out.histogram[r["bin"]] += r["n"]
        if r["status"] != "NORMAL":
            out.flagged += r["n"]
        if r["status"] == "CRITICAL":
            out.critical += r["n"]
    return out


def p95(histogram: list[int]) -> float:
    """Upper edge of the bin holding the 95th percentile (0 for no score)."""
    total = sum(histogram)
    if not total:
        return 0.0
    running = 0
    for i, n in enumerate(histogram):
        running += n
        if running >= 0.95 * total:
            return (i + 1) / BINS
    return 1.0


def fold(
    old: dict | None,
    day: date,
    model_name: str,
    model_version: str,
    batches: list[str],
    new: Scorings,
) -> dict | None:
    """The day's row after folding ``new`` into ``old`` (None: no row yet); None when every
    batch is in the row already (a retry)."""
    seen = set(old["batch_ids"]) if old else set()
    if old and set(batches) <= seen:
        return None
    base = old or {
        "predictions": 0,
        "flagged": 0,
        "critical": 0,
        "score_sum": 0.0,
        "score_histogram": [0] * BINS,
        "scoring_seconds": 0.0,
    }
    predictions = base["predictions"] + new.predictions
    histogram = [
        a + b for a, b in zip(base["score_histogram"], new.histogram, strict=True)
    ]
    flagged = base["flagged"] + new.flagged
    score_sum = base["score_sum"] + new.score_sum
    return {
        "day": day,
        "model_name": model_name,
        "model_version": model_version,
        "predictions": predictions,
        "flagged": flagged,
        "critical": base["critical"] + new.critical,
        "flagged_rate": flagged / predictions if predictions else 0.0,
        "mean_score": score_sum / predictions if predictions else 0.0,
        "p95_score": p95(histogram),
        "score_sum": score_sum,
        "score_histogram": histogram,
        "scoring_seconds": base["scoring_seconds"] + new.seconds,
        "batch_ids": sorted(seen | set(batches)),
    }
