"""Kafka offset ranges and batch planning, as plain functions the sensor and bronze share.

A batch is a set of half-open per-partition ranges ``[start, end)``. Its id and the sensor's
run_key are derived from those exact ranges, so the same range always maps to the same batch.
"""

import hashlib
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from fractions import Fraction


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
    ``max_events`` readable messages that advance every partition together.

    A partition missing from ``cursor`` (new, or never seen) starts at ``start_offsets`` (its
    log start) or 0. A cursor behind the log start keeps its range from the cursor: bronze
    records the offsets retention deleted as skipped, and they do not count to ``max_events``.
    """
    start_offsets = start_offsets or {}
    backlog = [
        OffsetRange(p, cursor.get(p, start_offsets.get(p, 0)), end)
        for p, end in sorted(end_offsets.items())
    ]
    return split_by_share(backlog, max_events, max_batches, start_offsets)


def split_by_share(
    backlog: list[OffsetRange],
    max_events: int,
    max_batches: int | None = None,
    start_offsets: dict[int, int] | None = None,
) -> list[list[OffsetRange]]:
    """Cut one range per partition into batches of ``max_events`` readable offsets that take
    from every partition in proportion to its backlog, so each batch ends at the same share
    of every partition (within one offset) and all of them reach their ends together.

    A backlog spans the same stretch of time on every partition (the cursor stopped on all
    of them at once), so cutting in partition order would hand silver one partition's newest
    events while another's, just as old, wait for a later run. Offsets below a partition's
    log start (``start_offsets``) ride along in the first batch and do not count.
    """
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    start_offsets = start_offsets or {}
    backlog = [r for r in backlog if r.start < r.end]
    first = {
        r.partition: min(max(r.start, start_offsets.get(r.partition, 0)), r.end)
        for r in backlog
    }
    sizes = {r.partition: r.end - first[r.partition] for r in backlog}
    total = sum(sizes.values())
    batches: list[list[OffsetRange]] = []
    done = dict.fromkeys(sizes, 0)
    while backlog and (not batches or sum(done.values()) < total):
        if max_batches is not None and len(batches) >= max_batches:
            break
        upto = _merged_prefix(sizes, min(total, (len(batches) + 1) * max_events))
        batches.append(
            [
                OffsetRange(
                    r.partition,
                    r.start if not batches else first[r.partition] + done[r.partition],
                    first[r.partition] + upto[r.partition],
                )
                for r in backlog
                if upto[r.partition] > done[r.partition]
                or (not batches and r.start < first[r.partition])
            ]
        )
        done = upto
    return batches


def _merged_prefix(sizes: dict[int, int], n: int) -> dict[int, int]:
    """How many offsets of each partition the first ``n`` of all partitions hold, merged in
    order of share: a partition's k-th of ``size`` offsets sits at ``(2k - 1) / (2 size)``,
    ties to the lower partition. So a cut leaves every partition at one common share of its
    backlog, and the prefix only grows with ``n``. Exact integer arithmetic throughout."""
    if n >= sum(sizes.values()):
        return dict(sizes)

    def held(num: int, den: int, strict: bool = False) -> dict[int, int]:
        """Offsets of each partition at shares <= num / den (< with ``strict``)."""
        return {
            p: min(s, max(0, (2 * num * s - strict + den) // (2 * den)))
            for p, s in sizes.items()
        }

    def reaching(p: int) -> Fraction | None:
        """The share of the first offset of ``p`` at which n offsets are held in all."""
        lo, hi = 1, sizes[p]
        while lo < hi:
            mid = (lo + hi) // 2
            if sum(held(2 * mid - 1, 2 * sizes[p]).values()) >= n:
                hi = mid
            else:
                lo = mid + 1
        if sum(held(2 * lo - 1, 2 * sizes[p]).values()) < n:
            return None
        return Fraction(2 * lo - 1, 2 * sizes[p])

    share = min(f for p in sizes if sizes[p] and (f := reaching(p)) is not None)
    taken = held(share.numerator, share.denominator, strict=True)
    reach = held(share.numerator, share.denominator)
    for p in sorted(sizes):  # the offsets at exactly that share, lower partitions first
        if sum(taken.values()) < n and reach[p] > taken[p]:
            taken[p] += 1
    return taken


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
