"""Detection with a campaign inside the training window, on all three event mixes.

Per mix, three streams of the same users follow each other: an earlier clean window (1 %
anomalies), on which the champion was trained; the training window, contaminated
(``--train-anomaly-rate``, 5 % by default: on the third mix, campaigns of 1-2 % each); and
a held-out stream (3 % anomalies, a seed never trained on). They are featurised as silver
features them (in one pass, so every event has its history; no broker or Delta, so a
mix takes about a minute). On the held-out stream, per type: recall at 1 % FPR (threshold:
the 99th percentile of the normal events' scores) and recall at the operating threshold,
and the share of normal events flagged, for

- the threat forests trained on the clean window (what the model does without a campaign),
- the same trained on the contaminated window as before (``today``),
- the same leaving the rows the champion flagged out of the forests' calibration only;
  out of the calibration and the operating threshold's rows (the budget then counts only
  the rows the champion let pass); out of the fit and calibration; out of all three
  (``anomaly_model`` now); and the top 1 % of a first pass out of the calibration instead
  of the champion's flags.

Last, the forests' fit time on the window and their score time per million rows.

``python bench/bench_learning.py [--mix generator commuters campaigns] [--events 30000]``
"""

import argparse
import time

import numpy as np
import pandas as pd

from anomaly_assets.devtools.campaigns import CampaignScenario
from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.devtools.labelled_features import (
    generated,
    labelled_features,
    split_at,
)
from anomaly_assets.devtools.scenario import CommuterScenario
from anomaly_assets.model.contamination import leave_out, trigger
from anomaly_assets.model.forests import (
    ThreatForests,
    anomaly_scores,
    tail_calibration,
)
from anomaly_assets.silver.features import FEATURE_COLUMNS

MIXES = {
    "generator": EventGenerator,
    "commuters": CommuterScenario,
    "campaigns": CampaignScenario,
}
FEATURES = list(FEATURE_COLUMNS)
#: TrainConfig's defaults.
TREES, ROWS_PER_TREE, SEED, BUDGET, CAP = 200, 2048, 42, 99.0, 0.05


def windows(spark, mix, events: int, rate: float):
    """(clean window, training window, held-out stream) of ``mix``, featurised together."""
    clean_messages, clean = generated(mix, events, 3, 0.01)
    train_messages, train = generated(mix, events, 5, rate, clean.clock)
    held_messages, _ = generated(mix, events, 2026, 0.03, train.clock)
    rows = labelled_features(spark, clean_messages + train_messages + held_messages)
    before, held = split_at(rows, train.clock)
    first, second = split_at(before, clean.clock)
    return first, second, held


def forests(X, calibrate=None):
    """The threat forests fitted on ``X``; with ``calibrate`` (a row mask), their surprisal
    calibrated on those rows only."""
    model = ThreatForests(TREES, ROWS_PER_TREE, SEED, FEATURES).fit(X)
    if calibrate is not None:
        model.detectors_ = [
            d._replace(
                calibration=tail_calibration(
                    -d.pipeline.score_samples(X[calibrate][:, d.columns])
                )
            )
            for d in model.detectors_
        ]
    return model


def figures(model, threshold_rows: np.ndarray, held: pd.DataFrame) -> dict:
    """Per type (recall at 1 % FPR, recall at the operating threshold); normal flagged."""
    scores = anomaly_scores(model, held[FEATURES].to_numpy(float))
    threshold = np.percentile(anomaly_scores(model, threshold_rows), BUDGET)
    normal = held["label"].isna().to_numpy()
    cut = np.quantile(scores[normal], 0.99)
    out = {"normal flagged": float((scores[normal] >= threshold).mean())}
    for kind in sorted(held["label"].dropna().unique()):
        rows = (held["label"] == kind).to_numpy()
        out[kind] = (
            float((scores[rows] > cut).mean()),
            float((scores[rows] >= threshold).mean()),
        )
    return out


def options(clean: pd.DataFrame, train: pd.DataFrame, held: pd.DataFrame) -> dict:
    X_clean = clean[FEATURES].to_numpy(float)
    X = train[FEATURES].to_numpy(float)
    champion = forests(X_clean)
    champion_scores = anomaly_scores(champion, X)
    flagged = champion_scores >= np.percentile(
        anomaly_scores(champion, X_clean), BUDGET
    )
    out_rows = leave_out(flagged, champion_scores, CAP, trigger(BUDGET)).rows
    plain = forests(X)
    first_pass = anomaly_scores(plain, X)
    top = first_pass >= np.percentile(first_pass, 99)
    share = {
        "flagged": flagged.mean(),
        "left out": out_rows.mean(),
        "of them anomalies": train["label"][out_rows].notna().mean()
        if out_rows.any()
        else 0.0,
    }
    robust = forests(X, calibrate=~out_rows)
    return share, {
        "clean window (reference)": figures(champion, X_clean, held),
        "today: contaminated window": figures(plain, X, held),
        "flags out of calibration": figures(robust, X, held),
        "flags out of calibration, threshold": figures(robust, X[~out_rows], held),
        "flags out of fit, calibration": figures(
            refit := forests(X[~out_rows]), X, held
        ),
        "flags out of fit, calibration, threshold (now)": figures(
            refit, X[~out_rows], held
        ),
        "first pass's top 1 % out of calibration": figures(
            forests(X, calibrate=~top), X, held
        ),
    }


def timing(rows: pd.DataFrame) -> tuple[float, float]:
    """Seconds to fit the forests on ``rows`` (trees of a fixed size; the calibration scores
    every row), and to score a million rows."""
    X = rows[FEATURES].to_numpy(float)
    t0 = time.perf_counter()
    model = forests(X)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    anomaly_scores(model, X)
    return fit, (time.perf_counter() - t0) / len(X) * 1e6


def main() -> None:
    from anomaly_assets.resources.spark import SparkResource

    parser = argparse.ArgumentParser()
    parser.add_argument("--mix", nargs="+", choices=list(MIXES), default=list(MIXES))
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--train-anomaly-rate", type=float, default=0.05)
    args = parser.parse_args()
    spark = SparkResource(log_level="ERROR", driver_memory="6g").spark_session
    for name in args.mix:
        t0 = time.perf_counter()
        clean, train, held = windows(
            spark, MIXES[name], args.events, args.train_anomaly_rate
        )
        share, table = options(clean, train, held)
        kinds = [k for k in next(iter(table.values())) if k != "normal flagged"]
        print(
            f"\n== {name}: training window {len(train):,} events, "
            f"{train['label'].notna().mean():.1%} anomalous; held out {len(held):,}, "
            f"{held['label'].notna().mean():.1%}; the champion flagged "
            f"{share['flagged']:.2%} of the window, left out {share['left out']:.2%} "
            f"({share['of them anomalies']:.0%} anomalies); "
            f"{time.perf_counter() - t0:.0f} s =="
        )
        print(
            "recall at 1 % FPR / at the operating threshold".ljust(44)
            + "".join(f"{k[:14]:>15}" for k in kinds)
            + f"{'normal flagged':>16}"
        )
        for option, row in table.items():
            print(
                f"{option:<44}"
                + "".join(f"{row[k][0]:.2f} / {row[k][1]:.2f}".rjust(15) for k in kinds)
                + f"{row['normal flagged']:>16.2%}"
            )
        fit, score = timing(train)
        print(
            f"threat forests: fit on {len(train):,} rows {fit:.0f} s; "
            f"score {score:.0f} s per million rows"
        )


if __name__ == "__main__":
    main()
