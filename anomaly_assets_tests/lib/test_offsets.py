"""Batch planning over offset ranges (pure functions)."""

import pytest

from anomaly_assets.lib.offsets import (
    OffsetRange,
    advance,
    batch_id,
    batch_key,
    plan_batches,
)


def test_backlog_splits_into_bounded_batches_covering_every_offset():
    batches = plan_batches({0: 10}, {0: 2510, 1: 700, 2: 0}, max_events=1000)
    assert [sum(r.count for r in b) for b in batches] == [1000, 1000, 1000, 200]
    covered = [
        (r.partition, o) for b in batches for r in b for o in range(r.start, r.end)
    ]
    assert len(covered) == len(set(covered)) == 2500 + 700
    assert min(o for p, o in covered if p == 0) == 10
    assert batches[2] == [OffsetRange(0, 2010, 2510), OffsetRange(1, 0, 500)]


def test_max_batches_caps_a_tick_and_cursor_moves_only_over_requested_ranges():
    batches = plan_batches({}, {0: 5000}, max_events=1000, max_batches=2)
    assert len(batches) == 2
    cursor = advance({}, batches)
    assert cursor == {0: 2000}
    rest = plan_batches(cursor, {0: 5000}, max_events=1000)
    assert rest[0][0] == OffsetRange(0, 2000, 3000) and len(rest) == 3


def test_new_partition_starts_at_its_log_start():
    batches = plan_batches({0: 100}, {0: 100, 1: 50}, 1000, start_offsets={0: 0, 1: 20})
    assert batches == [[OffsetRange(1, 20, 50)]]
    assert plan_batches({0: 100}, {0: 100}, 10) == []


def test_offsets_deleted_by_retention_stay_in_the_range_but_do_not_count():
    # cursor at 5, log start 50: [5, 50) is gone; bronze records it as a retention skip
    batches = plan_batches({0: 5}, {0: 100}, 10, start_offsets={0: 50})
    assert batches[0] == [OffsetRange(0, 5, 60)]
    assert batches[1:] == [[OffsetRange(0, s, s + 10)] for s in range(60, 100, 10)]
    # everything deleted: one range of skips only
    assert plan_batches({0: 5}, {0: 100}, 10, start_offsets={0: 100}) == [
        [OffsetRange(0, 5, 100)]
    ]


def test_batch_identity_is_stable_and_exact():
    a = [OffsetRange(1, 0, 5), OffsetRange(0, 3, 9)]
    b = list(reversed(a))
    assert batch_key("t", a) == batch_key("t", b) == "t|0:3-9,1:0-5"
    assert batch_id("t", a) == batch_id("t", b)
    assert batch_id("t", a) != batch_id(
        "t", [OffsetRange(1, 0, 6), OffsetRange(0, 3, 9)]
    )
    assert batch_id("t", a) != batch_id("u", a)


def test_batches_need_room():
    with pytest.raises(ValueError):
        plan_batches({}, {0: 1}, 0)
