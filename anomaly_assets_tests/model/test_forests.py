"""Severity calibration, status cut-offs and scoring: plain numpy / sklearn."""

import numpy as np
import pandas as pd
import pytest

from anomaly_assets.gold.scoring import ScoringSpec, score_frame
from anomaly_assets.model.forests import (
    QUANTILES,
    ThreatForests,
    anomaly_scores,
    build_pipeline,
    detection_quality,
    drift_summary,
    feature_baseline,
    held_out,
    score_quantiles,
    severity_percentile,
    status_of,
    surprisal,
    tail_calibration,
)

# Scores at the percentiles a model of an earlier version stored: p0=0.30, ..., p100=0.90
# (severity reads whichever percentiles the model has).
KNOWN = dict(
    zip(
        [f"p{q}" for q in (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100)],
        [0.30, 0.31, 0.33, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.70, 0.90],
    )
)


def test_severity_interpolates_between_quantiles_and_clamps():
    got = severity_percentile([0.45, 0.425, 0.65, 0.80, 0.10, 0.95, 0.30, 0.90], KNOWN)
    # 0.425 is half-way p25 (0.40) -> p50 (0.45); 0.65 half-way p95 -> p99; 0.80 half-way
    # p99 -> p100; below p0 clamps to 0, above p100 to 100.
    assert got == pytest.approx([50, 37.5, 97, 99.5, 0, 100, 0, 100])


def test_severity_with_flat_quantiles_keeps_the_highest_percentile():
    flat = {**KNOWN, "p0": 0.40, "p1": 0.40, "p5": 0.40, "p10": 0.40, "p25": 0.40}
    assert severity_percentile([0.40, 0.39], flat) == pytest.approx([25, 0])


def test_severity_in_the_tail_is_the_percentile_of_normal_traffic():
    """Quantiles fitted on one sample place fresh scores of the same traffic at their true
    percentile up to 99.99: "CRITICAL at 99.9" flags about 1 in 1,000 events."""
    rng = np.random.default_rng(7)
    model = build_pipeline(100, 256, seed=1).fit(rng.normal(size=(5000, 4)))
    train = anomaly_scores(model, rng.normal(size=(200_000, 4)))
    fresh = anomaly_scores(model, rng.normal(size=(200_000, 4)))
    assert set(score_quantiles(train)) == {f"p{q}" for q in QUANTILES}
    severity = severity_percentile(fresh, score_quantiles(train))
    for cut, tolerance in ((99.0, 0.1), (99.5, 0.07), (99.9, 0.03), (99.99, 0.01)):
        share = (severity >= cut).mean() * 100
        assert abs(share - (100 - cut)) <= tolerance, (cut, share)


def test_held_out_rows_are_a_fifth_and_the_same_on_every_run():
    ids = pd.Series([f"e{i}" for i in range(20_000)])
    kept = held_out(ids, seed=42)
    assert 0.19 < kept.mean() < 0.21
    assert (held_out(ids, seed=42) == kept).all()
    assert (held_out(ids.iloc[::-1], seed=42) == kept[::-1]).all(), (
        "row order is no matter"
    )
    assert (held_out(ids, seed=43) != kept).any()


def test_status_cut_offs():
    assert list(status_of([10, 95, 98.99, 99, 99.89, 99.9, 100], 99, 99.9)) == [
        "NORMAL",
        "NORMAL",
        "NORMAL",
        "WARNING",
        "WARNING",
        "CRITICAL",
        "CRITICAL",
    ]


def _data(n=4000, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d))


def _silver_frame(X, columns) -> pd.DataFrame:
    """Silver-like rows: the features ``X`` under ``columns`` and the event columns gold
    carries."""
    pdf = pd.DataFrame(X, columns=columns)
    for c in (
        "event_id",
        "user_id",
        "event_type",
        "country",
        "device_type",
        "batch_id",
    ):
        pdf[c] = "x"
    pdf["event_time"] = pd.Timestamp("2026-11-01", tz="UTC")
    return pdf


def test_score_frame_matches_sklearn_and_flags_by_threshold():
    X = _data(2000)
    model = build_pipeline(100, 256, seed=3).fit(X)
    scores = anomaly_scores(model, X)
    q = score_quantiles(scores)
    threshold = float(np.percentile(scores, 99))
    cols = [f"f{i}" for i in range(X.shape[1])]
    pdf = _silver_frame(X, cols)
    spec = ScoringSpec(
        tuple(cols), q, threshold, tuple(np.median(X, axis=0)), 99.9, "m", "3"
    )
    out = score_frame(model, spec, pdf)
    assert out["anomaly_score"].to_numpy() == pytest.approx(-model.score_samples(X))
    assert (out["is_anomaly"] == (scores >= threshold)).all()
    assert set(out.loc[out.is_anomaly, "status"]) <= {"WARNING", "CRITICAL"}
    assert (out.loc[~out.is_anomaly, "status"] == "NORMAL").all()
    assert out.loc[out.is_anomaly, "feature_contributions"].map(len).eq(len(cols)).all()
    assert out.loc[~out.is_anomaly, "feature_contributions"].isna().all()
    assert (out["model_version"] == "3").all()


def test_detection_quality_and_drift():
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.3])
    labels = pd.Series(
        ["bot_activity", "impossible_travel", None, None, "bot_activity", None]
    )
    q = detection_quality(scores, scores >= 0.75, labels)
    assert q.roc_auc == 1.0 and q.precision == 1.0 and q.recall == pytest.approx(2 / 3)
    assert q.per_type["bot_activity"]["recall"] == 0.5
    # at 1 % FPR the cut is the 99th percentile of the normal scores (0.2, 0.1, 0.3): 0.298
    assert q.per_type["bot_activity"]["recall_at_1pct_fpr"] == 1.0
    assert q.per_type["impossible_travel"] == {
        "count": 1,
        "roc_auc": 1.0,
        "recall": 1.0,
        "recall_at_1pct_fpr": 1.0,
    }
    assert detection_quality(scores, scores > 0.5, pd.Series([None] * 6)) is None

    base = feature_baseline(pd.DataFrame({"a": [0.0, 2.0, 4.0], "b": [1.0, 1.0, 1.0]}))
    drift = drift_summary(
        {"a": {"mean": 6.0, "std": 1.63}, "b": {"mean": 1.0, "std": 0.0}},
        base,
        threshold=0.5,
    )
    assert drift["a"]["mean_shift_std"] == pytest.approx(4 / np.std([0, 2, 4]))
    assert drift["a"]["drifted"] and not drift["b"]["drifted"]


def test_training_sample_does_not_depend_on_the_file_layout(spark):
    """The same silver rows in other files, in another order, give the same training set
    (it once changed with a table's partitioning and the model's gate flipped)."""
    from anomaly_assets.model.assets import sample_features
    from anomaly_assets.silver.features import FEATURE_COLUMNS

    rows = [(f"e{i:04d}", *[float(i % 7)] * len(FEATURE_COLUMNS)) for i in range(2000)]
    schema = ", ".join(["event_id string", *[f"{c} double" for c in FEATURE_COLUMNS]])
    df = spark.createDataFrame(rows, schema)
    one = sample_features(df.repartition(1), 500, seed=3)
    other = sample_features(df.orderBy(df.event_id.desc()).repartition(7), 500, seed=3)
    assert one["event_id"].tolist() == other["event_id"].tolist()
    assert one["event_id"].tolist() == sorted(one["event_id"])
    assert 400 <= len(one) <= 500
    assert (
        sample_features(df, 500, seed=4)["event_id"].tolist()
        != one["event_id"].tolist()
    )
    # gold's verdicts join the sample: flagged rows (the highest score of an event gold
    # holds twice), null where gold did not flag or never scored
    twice = next(e for e in one["event_id"] if int(e[-1]) % 2)  # an odd row, sampled
    gold = spark.createDataFrame(
        [(twice, True, 0.5), ("e0002", False, 0.2)]
        + [(f"e{i:04d}", True, 0.98) for i in range(1, 2000, 2)],
        "event_id string, is_anomaly boolean, anomaly_score double",
    )
    joined = sample_features(df, 500, seed=3, gold=gold).set_index("event_id")
    assert joined.index.tolist() == one["event_id"].tolist()
    odd = joined.index.str[-1].astype(int) % 2 == 1
    assert joined.loc[odd, "champion_flagged"].eq(True).all()
    assert joined.loc[~odd, "champion_flagged"].isna().all()
    assert joined.loc[twice, "champion_score"] == 0.98


def test_monitoring_counts_each_batch_once_whatever_the_retry():
    from datetime import date, timedelta

    from anomaly_assets.gold.monitoring import BINS, Scorings, fold, p95

    def scorings(scores, flagged):
        out = Scorings(predictions=len(scores), flagged=flagged, seconds=1.5)
        out.score_sum = float(sum(scores))
        for v in scores:
            out.histogram[min(BINS - 1, max(0, int(np.ceil(v * BINS)) - 1))] += 1
        return out

    rng = np.random.default_rng(3)
    a, b, c = (rng.uniform(0.3, 0.8, n) for n in (700, 300, 100))
    day = date(2026, 11, 30)
    first = fold(None, day, "m", "1", {"b1": scorings(a, 7)})
    both = fold(first, day, "m", "1", {"b2": scorings(b, 3)})
    assert fold(both, day, "m", "1", {"b2": scorings(b, 3)}) is None, "a retry"
    assert both["predictions"] == 1000 and both["flagged"] == 10
    assert both["flagged_rate"] == pytest.approx(0.01)
    assert both["mean_score"] == pytest.approx(np.r_[a, b].mean())
    true_p95 = np.quantile(np.r_[a, b], 0.95, method="inverted_cdf")
    assert 0 <= both["p95_score"] - true_p95 <= 1 / BINS + 1e-9
    assert both["scoring_seconds"] == pytest.approx(3.0)
    assert both["batch_ids"] == ["b1", "b2"]
    # a retry that also carries a newer batch adds only the newer one
    more = fold(both, day, "m", "1", {"b2": scorings(b, 3), "b3": scorings(c, 1)})
    assert more["predictions"] == 1100 and more["batch_ids"] == ["b1", "b2", "b3"]
    # a retry after midnight: the batch is in yesterday's row, today's gets nothing
    tomorrow = day + timedelta(days=1)
    assert fold(None, tomorrow, "m", "1", {"b3": scorings(c, 1)}, {"b3"}) is None
    assert p95([0] * BINS) == 0.0


def test_gold_refuses_a_champion_of_other_feature_definitions():
    from anomaly_assets.gold.assets import feature_mismatch
    from anomaly_assets.silver.features import FEATURE_FINGERPRINT

    assert feature_mismatch({"feature_fingerprint": FEATURE_FINGERPRINT}, 3) is None
    for stored in ({"feature_fingerprint": "0123456789ab"}, {}):
        message = feature_mismatch(stored, 3)
        assert "version 3" in message and "Materialise anomaly_model" in message


def test_tail_calibration_reads_the_share_of_training_rows_as_high():
    """A detector's surprisal is -ln(share of training scores at least as high): on fresh
    scores of the same traffic, surprisal >= ln(k) holds for about 1 row in k; a plateau
    (most rows alike in a threat's features) is no surprise at all."""
    rng = np.random.default_rng(11)
    calibration = tail_calibration(rng.gamma(2.0, size=200_000))
    fresh = surprisal(rng.gamma(2.0, size=400_000), calibration)
    for k, tolerance in ((10, 0.1), (100, 0.1), (1000, 0.15)):
        assert (fresh >= np.log(k)).mean() * k == pytest.approx(1.0, rel=tolerance), k
    flat = tail_calibration(np.r_[np.zeros(9_000), rng.uniform(1, 2, 1_000)])
    assert surprisal([0.0, -1.0], flat) == pytest.approx([0.0, 0.0])
    assert surprisal([1.999], flat)[0] > np.log(500)


def test_threat_forests_keep_to_the_stream_features_and_survive_pickling():
    import pickle

    rng = np.random.default_rng(2)
    features = ["events_1m", "amount_log", "hour_of_day"]
    X = rng.normal(size=(3000, 3))
    model = ThreatForests(20, 256, 2, features).fit(X)
    # only the threats whose features the stream has, each with those alone
    assert [(d[0], d[1]) for d in model.detectors_] == [
        ("all", [0, 1, 2]),
        ("bot_activity", [0]),
        ("high_value_purchase", [1]),
    ]
    again = pickle.loads(pickle.dumps(model))
    scores = anomaly_scores(model, X)
    assert (anomaly_scores(again, X) == scores).all()
    assert (scores >= 0).all() and (scores < 1).all()
    assert (model.predict(X[:50]) == scores[:50]).all()
    # the training scores' share above a score is what the score says: 1 - share
    assert (scores >= 0.99).mean() == pytest.approx(0.01, abs=0.006)


def test_score_frame_with_threat_forests_explains_with_the_winning_forest():
    """Gold's scoring of the product's model: scores as the model's, severity from its
    quantiles, and each anomaly's contributions adding up to its score minus the
    medians' score."""
    rng = np.random.default_rng(4)
    features = ["events_10s", "events_1m", "amount_log", "hour_of_day"]
    X = rng.lognormal(0, 0.5, size=(4000, 4))
    model = ThreatForests(50, 256, 4, features).fit(X)
    scores = anomaly_scores(model, X)
    spec = ScoringSpec(
        tuple(features),
        score_quantiles(scores),
        float(np.percentile(scores, 99)),
        tuple(np.median(X, axis=0)),
        99.9,
        "m",
        "1",
    )
    pdf = _silver_frame(X, features)
    out = score_frame(model, spec, pdf)
    assert out["anomaly_score"].to_numpy() == pytest.approx(scores)
    flagged = out[out["is_anomaly"]]
    assert 20 <= len(flagged) <= 60
    reference = anomaly_scores(model, np.median(X, axis=0)[None, :])[0]
    for _, row in flagged.iterrows():
        assert sum(row["feature_contributions"].values()) == pytest.approx(
            row["anomaly_score"] - reference, abs=1e-9
        )
        assert row["top_features"][0] in features
