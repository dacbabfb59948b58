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

With ``--labels 30,120,240``, the label stage instead: a simulated analyst answers that
many of the incidents the champion alerted on in the training window (wrong ``--wrong``
of the time, 10 %), ``train_label_stage`` fits and gates it, and per count over
``--trials`` seeds: how often it was fitted and promoted, the held-out figures of what
then scores, and the promotions worse than the forests on the truth.

``python bench/bench_learning.py [--mix generator commuters campaigns] [--events 30000]
[--labels 30,120,240 --trials 100]``
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
from anomaly_assets.model.assets import TrainConfig
from anomaly_assets.model.contamination import leave_out, trigger
from anomaly_assets.model.forests import (
    ThreatForests,
    anomaly_scores,
    tail_calibration,
)
from anomaly_assets.model.label_stage import Incident
from anomaly_assets.model.training import train as train_forests
from anomaly_assets.model.training import train_label_stage
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


def incidents_of(rows: pd.DataFrame) -> np.ndarray:
    """An incident id per row: the attack's episode, else the user's hour."""
    hour = pd.to_datetime(rows["event_time"], utc=True).dt.floor("h").astype(str)
    return np.where(
        rows["episode"].notna(),
        "attack-" + rows["episode"].astype(str),
        rows["user_id"] + "@" + hour,
    ).astype(str)


def catalogue(train: pd.DataFrame, flagged: np.ndarray) -> pd.DataFrame:
    """The incidents the champion alerted on in ``train``: whether each is an attack,
    when it ended, its events."""
    ids = incidents_of(train)
    alerted = np.isin(ids, np.unique(ids[flagged]))
    rows = train[alerted].assign(incident=ids[alerted])
    return rows.groupby("incident").agg(
        attack=("label", lambda v: v.notna().any()),
        ended=("event_time", "max"),
        events=("event_id", tuple),
    )


def analysts(alerted: pd.DataFrame, n: int, wrong: float, rng) -> list[Incident]:
    """``n`` of the ``alerted`` incidents answered in the order they ended, each verdict
    wrong with probability ``wrong``."""
    picked = alerted.iloc[rng.choice(len(alerted), min(n, len(alerted)), replace=False)]
    out = [
        Incident(i, pd.Timestamp(r.ended).to_pydatetime(), r.attack != flip, r.events)
        for (i, r), flip in zip(picked.iterrows(), rng.random(len(picked)) < wrong)
    ]
    return sorted(out, key=lambda x: (x.recorded_at, x.incident_id))


def truth(scores, threshold, held) -> dict:
    """Recall at 1 % FPR per type, its mean, and the ordinary events flagged."""
    normal = held["label"].isna().to_numpy()
    cut = np.quantile(scores[normal], 0.99)
    out = {
        k: float((scores[(held["label"] == k).to_numpy()] > cut).mean())
        for k in sorted(held["label"].dropna().unique())
    }
    out["mean"] = float(np.mean(list(out.values())))
    out["normal flagged"] = float((scores[normal] >= threshold).mean())
    return out


def with_labels(clean, train, held, counts, trials: int, wrong: float) -> dict:
    """Per count of answered incidents: how often the stage was fitted and promoted, the
    figures of what then scores (the stage if promoted, else the forests), and the
    trials where a promoted stage was worse than the forests on the truth."""
    config = TrainConfig(n_estimators=TREES, max_samples=ROWS_PER_TREE, seed=SEED)
    X_clean = clean[FEATURES].to_numpy(float)
    champion = forests(X_clean)
    champion_scores = anomaly_scores(champion, train[FEATURES].to_numpy(float))
    flagged = champion_scores >= np.percentile(
        anomaly_scores(champion, X_clean), BUDGET
    )
    data = train[["event_id", *FEATURES]].assign(
        champion_flagged=flagged, champion_score=champion_scores
    )
    trained = train_forests(data, FEATURES, config, {})
    X_held = held[FEATURES].to_numpy(float)
    H = trained.model.surprisals(X_held)
    base = truth(ThreatForests.score_of(H), trained.threshold_score, held)
    alerted = catalogue(train, flagged)
    out = {"forests": (base, None)}
    for n in counts:
        runs, promoted, fitted, worse, per_million = [], 0, 0, 0, 0.0
        for t in range(trials):
            answered = analysts(alerted, n, wrong, np.random.default_rng(t))
            events = {e for x in answered for e in x.event_ids}
            t0 = time.perf_counter()
            stage = train_label_stage(
                trained, train[train["event_id"].isin(events)], answered, config
            )
            seconds = time.perf_counter() - t0
            if stage.model is None:
                runs.append(base)
                continue
            fitted += 1
            t0 = time.perf_counter()
            # the surprisals given: the vote's own time
            scores = stage.model.score_rows(X_held, H)
            per_million = (time.perf_counter() - t0) / len(X_held) * 1e6
            figures = truth(scores, stage.threshold_score, held)
            if stage.promoted:
                promoted += 1
                worse += figures["mean"] < base["mean"] - 0.005 or (
                    figures["normal flagged"] > base["normal flagged"] * 1.1
                )
                runs.append(figures)
            else:
                runs.append(base)
        mean = pd.DataFrame(runs).mean().to_dict()
        out[n] = (mean, (fitted, promoted, worse, trials, seconds, per_million))
    return len(alerted), out


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
    parser.add_argument(
        "--labels",
        type=lambda v: [int(x) for x in v.split(",")],
        default=None,
        help="answered incidents to try the label stage with, e.g. 5,30,120",
    )
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--wrong", type=float, default=0.1)
    args = parser.parse_args()
    spark = SparkResource(log_level="ERROR", driver_memory="6g").spark_session
    for name in args.mix:
        t0 = time.perf_counter()
        clean, train, held = windows(
            spark, MIXES[name], args.events, args.train_anomaly_rate
        )
        if args.labels:
            print_labels(
                name,
                *with_labels(clean, train, held, args.labels, args.trials, args.wrong),
                args.wrong,
            )
            continue
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


def print_labels(name: str, alerted: int, table: dict, wrong: float) -> None:
    kinds = [k for k in table["forests"][0] if k not in ("mean", "normal flagged")]
    print(
        f"\n== {name}: {alerted} incidents alerted in the training window; analysts "
        f"wrong {wrong:.0%} of the time =="
    )
    print(
        "answered: fitted / promoted / promoted but worse of trials".ljust(50)
        + "".join(f"{k[:14]:>15}" for k in kinds)
        + f"{'mean':>7}{'normal flagged':>16}"
    )
    for n, (row, counts) in table.items():
        label = (
            "forests alone"
            if counts is None
            else (
                f"{n}: {counts[0]} / {counts[1]} / {counts[2]} of {counts[3]} "
                f"({counts[4]:.1f} s a stage, its vote {counts[5]:.0f} s per "
                "million rows)"
            )
        )
        print(
            f"{label:<50}"
            + "".join(f"{row[k]:.2f}".rjust(15) for k in kinds)
            + f"{row['mean']:>7.3f}{row['normal flagged']:>16.3%}"
        )


if __name__ == "__main__":
    main()
