"""The sensor's cursor and its retry decisions (pure functions)."""

import json

from anomaly_assets.ingestion.offsets import OffsetRange
from anomaly_assets.ingestion.sensor_state import (
    FAILED,
    IN_FLIGHT,
    SUCCEEDED,
    UNKNOWN,
    PendingBatch,
    RetryPolicy,
    SensorCursor,
    decide,
)

BATCH = PendingBatch("b1", "tid", (OffsetRange(0, 0, 10),), 1, requested_at=1000.0)


def test_cursor_round_trip_and_first_version():
    cursor = SensorCursor("t", "tid", {2: 5, 0: 7}, {"b1": BATCH})
    back = SensorCursor.decode(cursor.encode(), "t")
    assert back == cursor
    old = SensorCursor.decode(json.dumps({"0": 42, "1": 7}), "t")
    assert old == SensorCursor("t", "", {0: 42, 1: 7}, {})
    assert SensorCursor.decode(None, "t") == SensorCursor("t")


def test_a_failed_batch_is_retried_with_exponential_backoff_then_given_up():
    policy = RetryPolicy(max_attempts=3, base_delay_s=60, max_delay_s=100)
    assert decide(BATCH, SUCCEEDED, 1010, policy).action == "done"
    assert decide(BATCH, IN_FLIGHT, 99999, policy).action == "wait"

    first = decide(BATCH, FAILED, 1100, policy)
    assert first.action == "wait" and first.batch.retry_at == 1160
    assert "retry in 60s" in first.message
    assert decide(first.batch, FAILED, 1159, policy).action == "wait"
    second = decide(first.batch, FAILED, 1160, policy)
    assert second.action == "retry"
    assert (second.batch.attempt, second.batch.retry_at) == (2, None)
    # the next delay doubles (120) but is capped at 100
    third = decide(second.batch, FAILED, 1200, policy)
    assert third.batch.retry_at == 1300
    retried = decide(third.batch, FAILED, 1300, policy).batch
    assert retried.attempt == 3
    assert decide(retried, FAILED, 5000, policy).action == "give_up"


def test_a_batch_whose_run_never_appeared_is_requested_again():
    policy = RetryPolicy(lost_after_s=900)
    assert decide(BATCH, UNKNOWN, 1500, policy).action == "wait"
    lost = decide(BATCH, UNKNOWN, 2000, policy)
    assert lost.action == "wait" and lost.batch.retry_at is not None
