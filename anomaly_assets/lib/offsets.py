"""Kafka offset ranges and batch planning, as plain functions the sensor and bronze share.

A batch is a set of half-open per-partition ranges ``[start, end)``. Its id and the sensor's
run_key are derived from those exact ranges, so the same range always maps to the same batch.
"""

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True, order=True)
class OffsetRange:
    partition: int
    start: int  # first offset, inclusive
    end: int  # last offset + 1

    @property
    def count(self) -> int:
        return self.end - self.start


def batch_key(topic: str, ranges: list[OffsetRange]) -> str:
    parts = ",".join(f"{r.partition}:{r.start}-{r.end}" for r in sorted(ranges))
    return f"{topic}|{parts}"


def batch_id(topic: str, ranges: list[OffsetRange]) -> str:
    """A short, stable id for exactly these ranges."""
    return "b" + hashlib.sha256(batch_key(topic, ranges).encode()).hexdigest()[:16]


def plan_batches(
    cursor: dict[int, int],
    end_offsets: dict[int, int],
    max_events: int,
    max_batches: int | None = None,
    start_offsets: dict[int, int] | None = None,
) -> list[list[OffsetRange]]:
    """Split everything between ``cursor`` and ``end_offsets`` into batches of at most
    ``max_events`` messages, in partition order.

    A partition missing from ``cursor`` (new, or never seen) starts at ``start_offsets`` (the
    log start) or 0. A cursor behind the log start also moves up to it: those offsets were
    deleted by retention and can no longer be read.
    """
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    start_offsets = start_offsets or {}
    batches: list[list[OffsetRange]] = []
    current: list[OffsetRange] = []
    room = max_events
    for partition in sorted(end_offsets):
        pos = max(cursor.get(partition, 0), start_offsets.get(partition, 0))
        end = end_offsets[partition]
        while pos < end:
            take = min(room, end - pos)
            current.append(OffsetRange(partition, pos, pos + take))
            pos += take
            room -= take
            if room == 0:
                batches.append(current)
                current, room = [], max_events
                if max_batches is not None and len(batches) >= max_batches:
                    return batches
    if current:
        batches.append(current)
    return batches[:max_batches] if max_batches is not None else batches


def advance(cursor: dict[int, int], batches: list[list[OffsetRange]]) -> dict[int, int]:
    """The cursor after ``batches`` were requested: each partition moves to its highest end."""
    new = dict(cursor)
    for batch in batches:
        for r in batch:
            new[r.partition] = max(new.get(r.partition, 0), r.end)
    return new


def encode_cursor(cursor: dict[int, int]) -> str:
    return json.dumps({str(p): o for p, o in sorted(cursor.items())})


def decode_cursor(raw: str | None) -> dict[int, int]:
    if not raw:
        return {}
    return {int(p): int(o) for p, o in json.loads(raw).items()}


def ranges_to_config(ranges: list[OffsetRange]) -> list[dict]:
    return [asdict(r) for r in sorted(ranges)]


def fetch_offsets(
    client_config: dict, topic: str, timeout: float
) -> tuple[dict[int, int], dict[int, int]]:
    """(log start, end) offset of every partition of ``topic``, without consuming.

    Raises ``KafkaUnavailable`` when the cluster or topic cannot be reached within ``timeout``.
    """
    from confluent_kafka import KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({**client_config, "socket.connection.setup.timeout.ms": 2000})
    try:
        metadata = admin.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"cannot reach {client_config.get('bootstrap.servers')}: {exc}"
        )
    meta = metadata.topics.get(topic)
    if meta is None or meta.error is not None:
        raise KafkaUnavailable(
            f"topic {topic!r} is not available at {client_config.get('bootstrap.servers')}"
            + (f": {meta.error}" if meta is not None else "")
        )
    result = {}
    for spec_name, spec in (
        ("start", OffsetSpec.earliest()),
        ("end", OffsetSpec.latest()),
    ):
        request = {TopicPartition(topic, p): spec for p in meta.partitions}
        try:
            futures = admin.list_offsets(request, request_timeout=timeout)
            result[spec_name] = {
                tp.partition: f.result(timeout=timeout).offset
                for tp, f in futures.items()
            }
        except KafkaException as exc:
            raise KafkaUnavailable(f"listing offsets of {topic!r} failed: {exc}")
    return result["start"], result["end"]


class KafkaUnavailable(RuntimeError):
    """The broker or topic could not be reached; the message says which."""
