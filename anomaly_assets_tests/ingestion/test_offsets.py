"""Batch planning over offset ranges (pure functions)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.ingestion.offsets import (
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
    # every batch takes from both partitions in proportion (2,500 : 700)
    assert batches[0] == [OffsetRange(0, 10, 791), OffsetRange(1, 0, 219)]
    assert batches[3] == [OffsetRange(0, 2354, 2510), OffsetRange(1, 656, 700)]


@given(
    backlog=st.dictionaries(
        st.integers(0, 7),
        st.tuples(st.integers(0, 50), st.integers(0, 400), st.integers(0, 60)),
        max_size=6,
    ),
    max_events=st.integers(1, 300),
)
def test_partitions_advance_together_and_every_offset_is_planned_once(
    backlog, max_events
):
    # per partition: (cursor, readable backlog, offsets retention deleted past the cursor)
    cursor = {p: c for p, (c, _, _) in backlog.items()}
    starts = {p: c + gone for p, (c, _, gone) in backlog.items()}
    ends = {p: c + gone + n for p, (c, n, gone) in backlog.items()}
    batches = plan_batches(cursor, ends, max_events, start_offsets=starts)
    planned = [
        (r.partition, o) for b in batches for r in b for o in range(r.start, r.end)
    ]
    expected = [(p, o) for p in ends for o in range(cursor[p], ends[p])]
    assert sorted(planned) == sorted(expected)
    size = {p: ends[p] - starts[p] for p in ends}
    whole = sum(size.values())
    taken = dict.fromkeys(ends, 0)
    done = 0
    for b in batches:
        readable = {r.partition: r.end - max(r.start, starts[r.partition]) for r in b}
        if whole == 0:  # only offsets retention deleted: one batch of skips
            assert len(batches) == 1
            continue
        assert sum(readable.values()) == min(max_events, whole - done)
        done += sum(readable.values())
        for p, n in readable.items():
            taken[p] += n
        # every partition ends the batch at one common share of its backlog: each
        # offset sits at (k - 1/2) / size, and the cut falls between taken and untaken
        reached = max((taken[p] - 0.5) / size[p] for p in ends if taken[p])
        below = min(
            ((taken[p] + 0.5) / size[p] for p in ends if taken[p] < size[p]),
            default=1,
        )
        assert reached <= below
    assert len(batches) == -(-whole // max_events) or whole == 0


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
