"""The watermark over Kafka partitions (a plain function)."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.silver.step import PartitionMark, advance_watermark

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_the_partition_furthest_behind_holds_the_watermark_until_it_is_idle():
    marks = {
        "0": PartitionMark(NOW - 5 * HOUR, NOW),  # a backlog read slowly
        "1": PartitionMark(NOW - HOUR, NOW),
    }
    assert advance_watermark(None, marks, NOW, 3600, 3600) == NOW - 6 * HOUR
    # partition 0 not read for two hours (wall clock): idle, no longer holding back
    marks["0"] = PartitionMark(NOW - 5 * HOUR, NOW - 2 * HOUR)
    assert advance_watermark(None, marks, NOW, 3600, 3600) == NOW - 2 * HOUR
    # the watermark never moves back, and without an active partition it stays
    assert advance_watermark(NOW, marks, NOW, 3600, 3600) == NOW
    assert advance_watermark(NOW, {}, NOW, 3600, 3600) == NOW
    assert PartitionMark.from_state(marks["0"].to_state()) == marks["0"]


@given(
    newest=st.lists(st.integers(0, 10_000), min_size=1, max_size=6),
    seen_ago=st.lists(st.integers(0, 10_000), min_size=6, max_size=6),
    before=st.none() | st.integers(0, 10_000),
    lateness=st.integers(0, 3_600),
    idle=st.integers(0, 10_000),
)
def test_the_watermark_is_late_for_no_active_partition_and_never_moves_back(
    newest, seen_ago, before, lateness, idle
):
    marks = {
        str(p): PartitionMark(
            NOW + t * timedelta(seconds=1), NOW - seen_ago[p] * timedelta(seconds=1)
        )
        for p, t in enumerate(newest)
    }
    previous = None if before is None else NOW + before * timedelta(seconds=1)
    got = advance_watermark(previous, marks, NOW, lateness, idle)
    active = [m for m in marks.values() if NOW - m.seen <= timedelta(seconds=idle)]
    if previous is not None:
        assert got >= previous
    if got != previous:  # it moved: to the slowest active partition, less the lateness
        assert got == min(m.newest for m in active) - timedelta(seconds=lateness)
    for m in active:  # nothing an active partition may still send on time is behind it
        assert got is None or got <= max(
            m.newest - timedelta(seconds=lateness), previous or got
        )
