"""The gold checks answered from one aggregation give the verdicts a row-by-row
evaluation gives: each fault alone among clean rows (hypothesis, real Spark)."""

from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.gold.checks import GoldChecksConfig, gold_figures, gold_results
from anomaly_assets_tests.helpers import (
    CHECK_PROPERTY_SETTINGS,
    check_specs,
    verdicts,
)

FEATURES = ["a", "b", "c"]

clean_gold = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str),
        "batch_id": st.sampled_from(["b1", "b2"]),
        "anomaly_score": st.floats(0, 1),
        "severity_percentile": st.floats(0, 100),
        "model_name": st.just("forest"),
        "model_version": st.just("3"),
        "is_anomaly": st.booleans(),
        "feature_contributions": st.just('{"a": 0.1}'),
        "top_features": st.lists(st.sampled_from(FEATURES), min_size=1, unique=True),
    }
)
#: What can be wrong with one gold row: each check must see its own fault alone.
GOLD_FAULTS = [
    ("anomaly_score", None),
    ("anomaly_score", float("nan")),
    ("anomaly_score", 1.5),
    ("severity_percentile", -1.0),
    ("severity_percentile", None),
    ("model_name", None),
    ("model_version", None),
    ("feature_contributions", None),
    ("top_features", []),
]


@st.composite
def gold_rows(draw):
    """Clean rows with at most two faults, so a fault is often the only one."""
    rows = draw(st.lists(clean_gold, min_size=1, max_size=25))
    for i, (field, value) in draw(
        st.lists(
            st.tuples(st.integers(0, 24), st.sampled_from(GOLD_FAULTS)), max_size=2
        )
    ):
        rows[i % len(rows)][field] = value
    return rows


GOLD = (
    "event_id string, batch_id string, anomaly_score double, severity_percentile "
    "double, model_name string, model_version string, is_anomaly boolean, "
    "feature_contributions string, top_features array<string>"
)


@CHECK_PROPERTY_SETTINGS
@given(rows=gold_rows())
def test_gold_checks_agree_with_row_by_row(spark, rows):
    config = GoldChecksConfig(min_rate=0.1, max_rate=0.5)
    figures = gold_figures(spark.createDataFrame(rows, GOLD))
    specs = check_specs(
        "gold_scores_in_range",
        "gold_anomalies_have_contributions",
        "gold_anomaly_rate_in_band",
    )
    got = verdicts(gold_results(specs, figures, config))

    def in_range(r) -> bool:
        s, p = r["anomaly_score"], r["severity_percentile"]
        return s is not None and p is not None and 0 <= s <= 1 and 0 <= p <= 100

    batches = {r["batch_id"] for r in rows}
    rates = {
        b: sum(r["is_anomaly"] for r in rows if r["batch_id"] == b)
        / sum(r["batch_id"] == b for r in rows)
        for b in batches
    }
    assert got == {
        "gold_scores_in_range": all(
            in_range(r) and r["model_name"] and r["model_version"] for r in rows
        ),
        "gold_anomalies_have_contributions": all(
            r["feature_contributions"] is not None and r["top_features"]
            for r in rows
            if r["is_anomaly"]
        ),
        "gold_anomaly_rate_in_band": all(0.1 <= r <= 0.5 for r in rates.values()),
    }
