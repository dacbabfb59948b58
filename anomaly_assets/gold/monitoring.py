"""gold_model_monitoring: one row per scoring day and model version, for a dashboard.

Each gold step folds its scorings into the day's row of the model version it used: counts
(predictions, flagged, CRITICAL), the exact sum of scores and a 1,000-bin histogram of them,
from which the mean and the p95 (to 0.001) come, and the scoring seconds. A row remembers
the batches folded into it, and a step folds only the batches no row of its model
version holds yet, so a retry (after midnight, or with newer batches too) counts each batch
once. A re-scored event (a correction) counts as a new prediction: the table monitors
the scoring, not the events.
"""

from dataclasses import dataclass, field
from datetime import date

#: Scores are in [0, 1]: bin i holds (i / BINS, (i + 1) / BINS], bin 0 also 0.
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


def summarise(scored) -> dict[str, Scorings]:
    """The step's scorings of ``scored`` gold rows per batch, in one Spark aggregation."""
    from pyspark.sql import functions as F

    out: dict[str, Scorings] = {}
    rows = (
        scored.groupBy("batch_id", "status", score_bin().alias("bin"))
        .agg(F.count(F.lit(1)).alias("n"), F.sum("anomaly_score").alias("s"))
        .collect()
    )
    for r in rows:
        one = out.setdefault(r["batch_id"], Scorings())
        one.predictions += r["n"]
        one.score_sum += r["s"] or 0.0
        one.histogram[r["bin"]] += r["n"]
        if r["status"] != "NORMAL":
            one.flagged += r["n"]
        if r["status"] == "CRITICAL":
            one.critical += r["n"]
    return out


def share_seconds(per_batch: dict[str, Scorings], seconds: float) -> None:
    """Give each batch its share of the step's scoring ``seconds``, by predictions."""
    total = sum(one.predictions for one in per_batch.values()) or 1
    for one in per_batch.values():
        one.seconds = seconds * one.predictions / total


def combined(parts) -> Scorings:
    """The sum of several Scorings."""
    out = Scorings()
    for one in parts:
        out.predictions += one.predictions
        out.flagged += one.flagged
        out.critical += one.critical
        out.score_sum += one.score_sum
        out.seconds += one.seconds
        out.histogram = [
            a + b for a, b in zip(out.histogram, one.histogram, strict=True)
        ]
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


def _stored(row: dict) -> Scorings:
    """A stored monitoring row as Scorings, to add more to."""
    return Scorings(
        predictions=row["predictions"],
        flagged=row["flagged"],
        critical=row["critical"],
        score_sum=row["score_sum"],
        histogram=list(row["score_histogram"]),
        seconds=row["scoring_seconds"],
    )


def fold(
    old: dict | None,
    day: date,
    model_name: str,
    model_version: str,
    new: dict[str, Scorings],
    folded: set[str] = frozenset(),
) -> dict | None:
    """The day's row after folding the batches of ``new`` into ``old`` (None: no row yet),
    skipping the batches already folded (in ``old`` or, on another day, in ``folded``): a
    retry, even one that also carries newer batches or runs after midnight, counts each
    batch once. None when no batch is left to fold."""
    seen = set(old["batch_ids"]) if old else set()
    fresh = {b: one for b, one in new.items() if b not in seen | set(folded)}
    if not fresh:
        return None
    total = combined([*([_stored(old)] if old else []), *fresh.values()])
    n = total.predictions
    return {
        "day": day,
        "model_name": model_name,
        "model_version": model_version,
        "predictions": n,
        "flagged": total.flagged,
        "critical": total.critical,
        "flagged_rate": total.flagged / n if n else 0.0,
        "mean_score": total.score_sum / n if n else 0.0,
        "p95_score": p95(total.histogram),
        "score_sum": total.score_sum,
        "score_histogram": total.histogram,
        "scoring_seconds": total.seconds,
        "batch_ids": sorted(seen | set(fresh)),
    }
