"""The offset ledger: every offset of a topic-partition, from the first one seen to the
sensor's cursor, is in exactly one place: bronze_events, bronze_quarantine, or a recorded skip.

A ledger row is one landed piece ``[start, end)`` of one partition for one batch, with how many
of its offsets went to bronze, to quarantine and to skips (and why). Bronze writes it after
both tables, so it is the batch's commit record: a batch without a ledger row has not landed,
and the next run for that range reads it again (the insert-only MERGEs make that harmless).

Plain functions; the Spark and Kafka calls are passed in or kept at the edges.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from dagster import AssetKey

from anomaly_assets.ingestion.offsets import OffsetRange, plan_batches

#: Skip reason -> (what happened, what an operator does).
SKIP_REASONS: dict[str, tuple[str, str]] = {
    "retention": (
        (
            "Deleted by the topic's retention before it was read (the run came after the "
            "log start moved past it)."
        ),
        "Raise retention.ms / retention.bytes or ingest more often; the data is gone.",
    ),
    "transaction_marker": (
        "A transaction commit / abort marker: an offset that never holds a record.",
        "Nothing; markers are part of every transactional topic.",
    ),
    "aborted_transaction": (
        "A record of an aborted transaction, hidden by read_committed.",
        "Nothing, unless the producer should not have aborted.",
    ),
    "compacted": (
        (
            "Removed by log compaction (a newer record has the same key). In a compacted "
            "topic, transaction markers are counted here too: Kafka shows neither."
        ),
        "Nothing; compaction keeps the latest record per key by design.",
    ),
    "topic_deleted": (
        "The topic was deleted (and perhaps recreated) before these offsets were read.",
        "Check who deleted the topic; the new topic is ingested from its log start.",
    ),
    "truncated": (
        (
            "The partition's end moved below offsets that had been planned (an unclean "
            "leader election lost them)."
        ),
        "Check the cluster's replication settings; the records are gone.",
    ),
}

#: Spark schema of the bronze_offset_ledger table.
LEDGER_SCHEMA = (
    "topic string, topic_id string, partition int, start_offset bigint, end_offset bigint, "
    "batch_id string, bronze_rows bigint, quarantine_rows bigint, skipped bigint, "
    "skips array<struct<start:bigint,end:bigint,reason:string>>, recorded_at timestamp"
)


@dataclass(frozen=True, order=True)
class Skip:
    partition: int
    start: int
    end: int  # exclusive
    reason: str

    @property
    def count(self) -> int:
        return self.end - self.start


def _merge(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _minus(
    start: int, end: int, covered: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """``[start, end)`` minus the merged, sorted ``covered`` intervals."""
    out, pos = [], start
    for c_start, c_end in covered:
        if c_end <= pos or c_start >= end:
            continue
        if c_start > pos:
            out.append((pos, c_start))
        pos = max(pos, c_end)
    if pos < end:
        out.append((pos, end))
    return out


def subtract(
    ranges: list[OffsetRange], covered: dict[int, list[tuple[int, int]]]
) -> list[OffsetRange]:
    """The parts of ``ranges`` not in ``covered`` (partition -> landed intervals). Adjacent or
    overlapping ranges of a partition are merged first, so pieces never touch."""
    wanted: dict[int, list[tuple[int, int]]] = {}
    for r in ranges:
        wanted.setdefault(r.partition, []).append((r.start, r.end))
    out = []
    for partition, intervals in wanted.items():
        landed = _merge(covered.get(partition, []))
        for start, end in _merge(intervals):
            out += [OffsetRange(partition, s, e) for s, e in _minus(start, end, landed)]
    return sorted(out)


def split_unreadable(
    pieces: list[OffsetRange], log_starts: dict[int, int], log_ends: dict[int, int]
) -> tuple[list[OffsetRange], list[Skip]]:
    """(the readable parts, skips): below the log start is retention, past the end is
    truncation, a partition that is gone entirely is a deleted topic."""
    readable, skips = [], []
    for r in pieces:
        if r.partition not in log_ends:
            skips.append(Skip(r.partition, r.start, r.end, "topic_deleted"))
            continue
        lo = min(max(r.start, log_starts.get(r.partition, 0)), r.end)
        hi = max(min(r.end, log_ends[r.partition]), lo)
        if lo > r.start:
            skips.append(Skip(r.partition, r.start, lo, "retention"))
        if hi < r.end:
            skips.append(Skip(r.partition, hi, r.end, "truncated"))
        if lo < hi:
            readable.append(OffsetRange(r.partition, lo, hi))
    return readable, skips


def missing(piece: OffsetRange, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Offsets of ``piece`` that Kafka did not return, given the returned ``runs`` (contiguous
    ``[start, end)`` intervals of returned offsets in that partition)."""
    return _minus(piece.start, piece.end, _merge(runs))


def classify_gaps(
    partition: int,
    gaps: list[tuple[int, int]],
    uncommitted: set[int],
    compacted: bool,
) -> list[Skip]:
    """Gaps of a read_committed read as skips: offsets a read_uncommitted read does return
    are aborted records; the rest are markers, or compaction on a compacted topic."""
    other = "compacted" if compacted else "transaction_marker"
    skips = []
    for start, end in gaps:
        run_start, run_reason = start, None
        for offset in range(start, end + 1):
            reason = (
                None
                if offset == end
                else "aborted_transaction"
                if offset in uncommitted
                else other
            )
            if reason != run_reason:
                if run_reason is not None:
                    skips.append(Skip(partition, run_start, offset, run_reason))
                run_start, run_reason = offset, reason
    return skips


def uncommitted_offsets(
    client_config: dict,
    topic: str,
    partition: int,
    gaps: list[tuple[int, int]],
    timeout: float,
) -> set[int]:
    """Offsets inside ``gaps`` that a read_uncommitted consumer returns (aborted records).

    Reads only the gaps: one seek per gap, stopping at its end, so a batch with no gaps
    costs nothing and one with markers costs a fetch per transaction.
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    if not gaps:
        return set()
    consumer = Consumer(
        {
            **client_config,
            "group.id": "anomaly-assets-ledger",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    found: set[int] = set()
    try:
        for start, end in gaps:
            consumer.assign([TopicPartition(topic, partition, start)])
            while True:
                msg = consumer.poll(timeout)
                if msg is None:
                    raise KafkaException(
                        f"no answer reading {topic}[{partition}] at {start} within {timeout}s"
                    )
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        break
                    raise KafkaException(msg.error())
                if msg.offset() >= end:
                    break
                found.add(msg.offset())
    finally:
        consumer.close()
    return found


def ledger_rows(
    topic: str,
    topic_id: str,
    batch_id: str,
    pieces: list[OffsetRange],
    counts: dict[tuple[int, int], tuple[int, int]],
    skips: list[Skip],
    recorded_at,
) -> list[tuple]:
    """One row per piece, with the skips inside it. ``counts`` maps the (partition, start) of
    the readable part of a piece to its (bronze, quarantine) rows. Rows match LEDGER_SCHEMA."""
    rows = []
    for piece in pieces:
        inside = sorted(
            s
            for s in skips
            if s.partition == piece.partition and piece.start <= s.start < piece.end
        )
        valid, invalid = next(
            (
                c
                for (p, start), c in counts.items()
                if p == piece.partition and piece.start <= start < piece.end
            ),
            (0, 0),
        )
        rows.append(
            (
                topic,
                topic_id,
                piece.partition,
                piece.start,
                piece.end,
                batch_id,
                valid,
                invalid,
                sum(s.count for s in inside),
                [(s.start, s.end, s.reason) for s in inside],
                recorded_at,
            )
        )
    return rows


def holes(
    landed: dict[int, list[tuple[int, int]]],
) -> list[OffsetRange]:
    """Per partition, the offsets between the first landed one and the last that have no
    ledger row: what a catch-up run must read again."""
    out = []
    for partition, intervals in landed.items():
        merged = _merge(intervals)
        out += [
            OffsetRange(partition, a_end, b_start)
            for (_, a_end), (b_start, _) in pairwise(merged)
        ]
    return sorted(out)


def landed_intervals(
    ledger, topic: str, topic_id: str, within: list[OffsetRange] | None = None
) -> dict[int, list[tuple[int, int]]]:
    """partition -> the [start, end) pieces the ledger holds for this topic id, optionally
    only those overlapping ``within`` (the filters let Delta skip the other files)."""
    from pyspark.sql import functions as F

    if ledger is None:
        return {}
    rows = ledger.filter((F.col("topic") == topic) & (F.col("topic_id") == topic_id))
    if within:
        cond = None
        for r in within:
            one = (
                (F.col("partition") == r.partition)
                & (F.col("start_offset") < r.end)
                & (F.col("end_offset") > r.start)
            )
            cond = one if cond is None else cond | one
        rows = rows.filter(cond)
    out: dict[int, list[tuple[int, int]]] = {}
    for row in rows.select("partition", "start_offset", "end_offset").collect():
        out.setdefault(row[0], []).append((row[1], row[2]))
    return out


def catch_up_ranges(
    landed: dict[int, list[tuple[int, int]]],
    starts: dict[int, int],
    ends: dict[int, int],
    max_events: int,
) -> list[OffsetRange]:
    """What a run without configured ranges reads: the holes below each partition's
    high-water mark first (from the log start: a first batch that failed is a hole too),
    then new offsets up to the end, every partition in proportion to its backlog (as the
    sensor plans them); at most ``max_events`` offsets."""
    wanted = holes(landed)
    for partition, intervals in landed.items():
        first = min(s for s, _ in intervals)
        if starts.get(partition, first) < first:
            wanted.append(OffsetRange(partition, starts[partition], first))
    out, room = [], max_events
    for r in sorted(wanted):
        if room <= 0:
            return out
        out.append(OffsetRange(r.partition, r.start, min(r.end, r.start + room)))
        room -= out[-1].count
    marks = {
        p: max((e for _, e in landed.get(p, [])), default=starts.get(p, 0))
        for p in ends
    }
    if room > 0:
        new = plan_batches(marks, ends, room, max_batches=1, start_offsets=starts)
        out.extend(new[0] if new else [])
    return out


def verify_batch(
    ranges: list[OffsetRange],
    rows: list[tuple[int, int, int, int, int, int]],
    stored: dict[int, tuple[int, int]],
) -> list[str]:
    """Problems with one batch's accounting; empty when every offset of ``ranges`` is in
    exactly one place.

    ``rows``: ledger rows overlapping the ranges as (partition, start, end, bronze,
    quarantine, skipped); ``stored``: partition -> (rows, distinct offsets) actually in
    bronze_events ∪ bronze_quarantine over the ledger rows' offsets.
    """
    problems = []
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for p, start, end, valid, invalid, skipped in rows:
        if valid + invalid + skipped != end - start:
            problems.append(
                f"p{p} [{start},{end}): {valid} bronze + {invalid} quarantine + "
                f"{skipped} skipped != {end - start} offsets"
            )
        by_partition.setdefault(p, []).append((start, end))
    for r in ranges:
        spans = sorted(by_partition.get(r.partition, []))
        for (_, a_end), (b_start, _) in pairwise(spans):
            if b_start < a_end:
                problems.append(f"p{r.partition}: ledger rows overlap at {b_start}")
        uncovered = _minus(r.start, r.end, _merge(spans))
        if uncovered:
            problems.append(f"p{r.partition}: no ledger row for {uncovered}")
    for p, spans in by_partition.items():
        landed = sum(v + i for q, _, _, v, i, _ in rows if q == p)
        n, distinct = stored.get(p, (0, 0))
        if n != distinct:
            problems.append(f"p{p}: {n - distinct} offsets stored twice")
        if n != landed:
            problems.append(f"p{p}: ledger says {landed} rows landed, tables hold {n}")
    return problems


def scan_ledger(
    landed: dict[int, list[tuple[int, int]]],
    marks: dict[int, int],
    log_starts: dict[int, int] | None = None,
) -> tuple[dict[int, int], list[OffsetRange]]:
    """(new marks, holes). A mark is where the partition's hole-free prefix ends; ``landed``
    need only hold the pieces ending after the previous ``marks``, which keeps the check's
    cost to the part of the ledger not yet proven contiguous. Without a mark, a partition's
    prefix starts at its log start when that is lower than the first landed offset."""
    new_marks, found = {}, []
    for partition, intervals in landed.items():
        merged = _merge(intervals)
        first = min(merged[0][0], (log_starts or {}).get(partition, merged[0][0]))
        mark = marks.get(partition, first)
        contiguous = True
        for start, end in merged:
            if end <= mark:
                continue
            if start > mark:
                found.append(OffsetRange(partition, mark, start))
                contiguous = False
            mark = max(mark, end)
            if contiguous:
                new_marks[partition] = mark
        new_marks.setdefault(partition, marks.get(partition, first))
    return new_marks, sorted(found)


#: Ledger metadata: the offset each partition has landed through (a fresh sensor cursor
#: starts there instead of asking for what has landed again).
LANDED_THROUGH = "landed_through"


def previous_landed_through(instance, ledger: AssetKey, topic: str, topic_id: str):
    """The ledger's last ``landed_through`` offsets, if they are of this topic's id."""
    event = instance.get_latest_materialization_event(ledger)
    if event is None or event.asset_materialization is None:
        return {}
    mark = event.asset_materialization.metadata.get(LANDED_THROUGH)
    data = getattr(mark, "value", None) or {}
    if data.get("topic") != topic or data.get("topic_id") != topic_id:
        return {}
    return {int(p): int(o) for p, o in data["offsets"].items()}


def landed_through(
    instance, ledger: AssetKey, topic: str, topic_id: str, ranges: list[OffsetRange]
) -> dict:
    """The highest offset landed per partition, this batch's ranges included."""
    marks = previous_landed_through(instance, ledger, topic, topic_id)
    for r in ranges:
        marks[r.partition] = max(marks.get(r.partition, 0), r.end)
    offsets = {str(p): o for p, o in sorted(marks.items())}
    return {"topic": topic, "topic_id": topic_id, "offsets": offsets}
