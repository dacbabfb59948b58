"""Property: whatever is accepted goes through Spark's bronze path and gives finite features."""

import json
import math
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly_assets.contract import EVENT_TYPES
from anomaly_assets.ingestion import bronze as lib
from anomaly_assets.silver.features import FEATURE_COLUMNS, silver_rows
from anomaly_assets_tests.ingestion.test_validation import mutated_events

KAFKA_TS = datetime(2026, 11, 1, 12, tzinfo=UTC)


@st.composite
def extreme_valid_events(draw):
    """Valid events at the edges of the contract: huge and tiny amounts, int64 bytes."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    seconds = draw(
        st.integers(
            0, int((KAFKA_TS - datetime(2000, 1, 1, tzinfo=UTC)).total_seconds())
        )
    )
    event = {
        "event_id": str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))),
        "event_type": event_type,
        "event_ts": (KAFKA_TS - timedelta(seconds=seconds)).isoformat(),
        "user_id": draw(st.sampled_from(["u1", "u2", "u3"])),
        "session_id": "s",
        "ip_address": draw(
            st.sampled_from(["10.0.0.1", "::1", "2001:db8::7", "8.8.8.8"])
        ),
        "country": draw(st.sampled_from(["US", "DE", "ZZ"])),
        "device_type": draw(st.text(max_size=5)),
        "user_agent": draw(st.text(max_size=5)),
        "schema_version": 1,
        "success": draw(st.booleans()),
        "amount": draw(st.floats(0, 1.7e308) | st.sampled_from([0.0, 5e-324, 1e-300])),
        "items": draw(st.integers(0, 2**31 - 1)),
        "bytes_transferred": draw(st.integers(0, 2**63 - 1) | st.sampled_from([0, 1])),
        "duration_ms": draw(st.integers(0, 2**31 - 1)),
    }
    return json.dumps(event).encode()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(extreme_valid_events(), min_size=5, max_size=40),
    st.lists(mutated_events(), max_size=40),
)
def test_accepted_events_fit_bronze_and_give_finite_features(spark, valid, hostile):
    values = valid + hostile
    raw = spark.createDataFrame(
        [
            (b"k", v, "t", 0, i, KAFKA_TS.replace(tzinfo=None))
            for i, v in enumerate(values)
        ],
        lib.KAFKA_SOURCE_SCHEMA,
    )
    validated = lib.validate(lib.stage(raw).persist(), "b1").persist()
    good, bad = lib.split(validated)
    n_good, n_bad = good.count(), bad.count()
    assert n_good + n_bad == len(values), "one verdict per message"
    assert (
        n_good >= len(valid) - 1
    )  # a duplicate event_id among the valid ones is possible
    reasons = {r[0] for r in bad.select("reason").distinct().collect()}
    assert "validator_error" not in reasons and "unencodable_row" not in reasons

    rows = silver_rows(good).collect()
    assert len(rows) == good.select("event_id").distinct().count()
    for row in rows:
        for name in FEATURE_COLUMNS:
            value = row[name]
            assert value is not None and math.isfinite(value), (name, row.asDict())
    validated.unpersist()
