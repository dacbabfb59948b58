"""Silver's one-query figures: nulls and non-finite features counted per column, and the
written event_ids stored twice, even when a written row has no event time (it names no
day to look in, and its null is what the schema check must report)."""

from datetime import UTC, datetime

from anomaly_assets.silver.checks import silver_figures

SCHEMA = "event_id string, event_time timestamp, user_id string, events_1m double"
T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_nulls_non_finite_values_and_duplicates_in_one_query(spark):
    stored = spark.createDataFrame(
        [
            ("a", T, "u", 1.0),
            ("a", T, "u", 1.0),
            ("b", T, "u", 2.0),
            ("c", T, "u", 3.0),
        ],
        SCHEMA,
    )
    written = spark.createDataFrame(
        [
            ("a", T, "u", float("nan")),  # stored twice
            ("b", T, None, float("inf")),
            ("c", None, "u", None),  # no event time: counted, not looked up
        ],
        SCHEMA,
    )
    figures = silver_figures(
        written, stored, ["event_id", "event_time", "user_id", "events_1m"]
    )
    assert figures == {
        "nulls": {"event_time": 1, "user_id": 1, "events_1m": 3},
        "duplicates": 1,
        "sample": ["a"],
    }
