"""The offset ledger's interval logic (pure functions), with properties over random ranges."""

from datetime import UTC, datetime
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly_assets.ingestion.ledger import (
    Skip,
    catch_up_ranges,
    classify_gaps,
    holes,
    ledger_rows,
    missing,
    split_unreadable,
    subtract,
)
from anomaly_assets.ingestion.offsets import OffsetRange


def offsets(ranges):
    return {(r.partition, o) for r in ranges for o in range(r.start, r.end)}


def test_subtract_leaves_only_what_is_not_landed():
    got = subtract(
        [OffsetRange(0, 0, 100), OffsetRange(1, 10, 20)],
        {0: [(20, 50), (60, 70)], 1: [(0, 30)]},
    )
    assert got == [
        OffsetRange(0, 0, 20),
        OffsetRange(0, 50, 60),
        OffsetRange(0, 70, 100),
    ]
    # adjacent requested ranges merge, so pieces never touch
    assert subtract([OffsetRange(0, 0, 5), OffsetRange(0, 5, 9)], {}) == [
        OffsetRange(0, 0, 9)
    ]


intervals = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 20)).map(
        lambda t: (t[0], t[0] + t[1])
    ),
    max_size=6,
)


@settings(max_examples=300)
@given(intervals, intervals)
def test_subtract_partitions_the_request(requested, landed):
    ranges = [OffsetRange(0, s, e) for s, e in requested]
    pieces = subtract(ranges, {0: landed})
    wanted = offsets(ranges)
    done = {(0, o) for s, e in landed for o in range(s, e)}
    assert offsets(pieces) == wanted - done
    assert sum(p.count for p in pieces) == len(offsets(pieces)), "pieces are disjoint"
    assert all(a.end < b.start for a, b in pairwise(pieces))


def test_unreadable_parts_become_skips():
    readable, skips = split_unreadable(
        [OffsetRange(0, 0, 100), OffsetRange(1, 0, 10), OffsetRange(2, 5, 8)],
        log_starts={0: 40, 1: 0},
        log_ends={0: 90, 1: 10},
    )
    assert readable == [OffsetRange(0, 40, 90), OffsetRange(1, 0, 10)]
    assert sorted(skips) == [
        Skip(0, 0, 40, "retention"),
        Skip(0, 90, 100, "truncated"),
        Skip(2, 5, 8, "topic_deleted"),
    ]
    # fully deleted by retention
    readable, skips = split_unreadable([OffsetRange(0, 0, 10)], {0: 50}, {0: 60})
    assert readable == [] and skips == [Skip(0, 0, 10, "retention")]


def test_gaps_are_markers_aborted_records_or_compaction():
    piece = OffsetRange(0, 0, 18)
    # txn 1: 0-4 + marker 5; aborted txn: 6-10 + marker 11; txn 3: 12-16 + marker 17
    gaps = missing(piece, [(0, 5), (12, 17)])
    assert gaps == [(5, 12), (17, 18)]
    skips = classify_gaps(0, gaps, uncommitted={6, 7, 8, 9, 10}, compacted=False)
    assert skips == [
        Skip(0, 5, 6, "transaction_marker"),
        Skip(0, 6, 11, "aborted_transaction"),
        Skip(0, 11, 12, "transaction_marker"),
        Skip(0, 17, 18, "transaction_marker"),
    ]
    assert classify_gaps(0, [(3, 6)], set(), compacted=True) == [
        Skip(0, 3, 6, "compacted")
    ]
    assert missing(OffsetRange(0, 5, 9), []) == [(5, 9)]


def test_ledger_rows_account_for_every_offset():
    pieces = [OffsetRange(0, 0, 18), OffsetRange(1, 0, 10)]
    skips = [Skip(0, 5, 6, "transaction_marker"), Skip(0, 6, 11, "aborted_transaction")]
    skips += [
        Skip(0, 11, 12, "transaction_marker"),
        Skip(0, 17, 18, "transaction_marker"),
    ]
    skips += [Skip(1, 0, 4, "retention")]
    counts = {(0, 0): (9, 1), (1, 4): (6, 0)}  # keyed by the readable part's start
    at = datetime(2026, 11, 1, tzinfo=UTC)
    rows = ledger_rows("t", "id", "b1", pieces, counts, skips, at)
    for row in rows:
        assert row[6] + row[7] + row[8] == row[4] - row[3]
    assert rows[1][8] == 4 and rows[1][9] == [(0, 4, "retention")]


def test_holes_and_catch_up_read_gaps_first_then_new_offsets():
    landed = {0: [(0, 10), (20, 30), (30, 40)], 1: [(5, 8)]}
    assert holes(landed) == [OffsetRange(0, 10, 20)]
    got = catch_up_ranges(landed, {0: 0, 1: 0, 2: 3}, {0: 50, 1: 8, 2: 9}, 100)
    # partition 1 landed from 5 but its log starts at 0: a first batch that failed
    assert got == [
        OffsetRange(0, 10, 20),
        OffsetRange(1, 0, 5),
        OffsetRange(0, 40, 50),
        OffsetRange(2, 3, 9),
    ]
    capped = catch_up_ranges(landed, {0: 0, 1: 0, 2: 3}, {0: 50, 1: 8, 2: 9}, 17)
    assert capped == [
        OffsetRange(0, 10, 20),
        OffsetRange(1, 0, 5),
        # the two offsets left go to the new offsets in proportion (10 on p0, 6 on p2)
        OffsetRange(0, 40, 41),
        OffsetRange(2, 3, 4),
    ]
