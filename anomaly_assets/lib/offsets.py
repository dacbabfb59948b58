"""Kafka offset ranges and batch planning, as plain functions the sensor and bronze share.

A batch is a set of half-open per-partition ranges ``[start, end)``. Its id and the sensor's
run_key are derived from those exact ranges, so the same range always maps to the same batch.
"""

import hashlib
from concurrent.futures import TimeoutError as FutureTimeout
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
    ``max_events`` readable messages, in partition order.

    A partition missing from ``cursor`` (new, or never seen) starts at ``start_offsets`` (its
    log start) or 0. A cursor behind the log start keeps its range from the cursor: bronze
    records the offsets retention deleted as skipped, and they do not count to ``max_events``.
    """
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    start_offsets = start_offsets or {}
    batches: list[list[OffsetRange]] = []
    current: list[OffsetRange] = []
    room = max_events
    for partition in sorted(end_offsets):
        log_start = start_offsets.get(partition, 0)
        pos = cursor.get(partition, log_start)
        end = end_offsets[partition]
        while pos < end:
            readable_from = min(max(pos, log_start), end)
            take = min(room, end - readable_from)
            current.append(OffsetRange(partition, pos, readable_from + take))
            pos = readable_from + take
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


def ranges_to_config(ranges: list[OffsetRange]) -> list[dict]:
    return [asdict(r) for r in sorted(ranges)]


@dataclass(frozen=True)
class TopicState:
    """What the broker says of a topic right now."""

    topic: str
    topic_id: str  # changes when the topic is deleted and created again
    starts: dict[int, int]  # log start offset per partition
    ends: dict[
        int, int
    ]  # end per partition: the last stable offset under read_committed


def fetch_topic_state(
    client_config: dict, topic: str, timeout: float, read_committed: bool = True
) -> TopicState:
    """Topic id and (log start, end) offsets of every partition of ``topic``, without
    consuming. Under ``read_committed`` the end is the last stable offset, so a range never
    reaches into an open transaction.

    Raises ``KafkaUnavailable`` when the cluster or topic cannot be reached within ``timeout``.
    """
    from confluent_kafka import IsolationLevel, KafkaException, TopicCollection
    from confluent_kafka import TopicPartition as TP
    from confluent_kafka.admin import AdminClient, OffsetSpec

    where = client_config.get("bootstrap.servers")
    admin = AdminClient({**client_config, "socket.connection.setup.timeout.ms": 2000})
    try:
        described = admin.describe_topics(
            TopicCollection([topic]), request_timeout=timeout
        )[topic].result(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"topic {topic!r} is not available at {where}: {exc}")
    except FutureTimeout:
        raise KafkaUnavailable(f"cannot reach {where} within {timeout}s")
    isolation = (
        IsolationLevel.READ_COMMITTED
        if read_committed
        else IsolationLevel.READ_UNCOMMITTED
    )
    partitions = [p.id for p in described.partitions]
    result = {}
    for spec_name, spec in (
        ("start", OffsetSpec.earliest()),
        ("end", OffsetSpec.latest()),
    ):
        try:
            futures = admin.list_offsets(
                {TP(topic, p): spec for p in partitions},
                isolation_level=isolation,
                request_timeout=timeout,
            )
            result[spec_name] = {
                tp.partition: f.result(timeout=timeout).offset
                for tp, f in futures.items()
            }
        except (KafkaException, FutureTimeout) as exc:
            raise KafkaUnavailable(f"listing offsets of {topic!r} failed: {exc!r}")
    return TopicState(topic, str(described.topic_id), result["start"], result["end"])


def fetch_offsets(
    client_config: dict, topic: str, timeout: float
) -> tuple[dict[int, int], dict[int, int]]:
    """(log start, end) offset of every partition of ``topic`` (read_committed)."""
    state = fetch_topic_state(client_config, topic, timeout)
    return state.starts, state.ends


def is_compacted(client_config: dict, topic: str, timeout: float) -> bool:
    """Whether the topic's cleanup.policy includes compaction."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient(client_config)
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    config = next(iter(futures.values())).result(timeout=timeout)
    return "compact" in config["cleanup.policy"].value


class KafkaUnavailable(RuntimeError):
    """The broker or topic could not be reached; the message says which."""
