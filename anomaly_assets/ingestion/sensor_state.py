"""The Kafka offsets sensor's cursor, and what it does with batches whose run failed.

The cursor holds the topic name and id it planned on, the next offset per partition, and the
batches it requested that have not succeeded yet. A batch whose run failed or was cancelled
is requested again under a fresh run key after an exponential backoff, up to a bounded number
of attempts; its batch id stays the same, so every write it makes replaces or skips what an
earlier attempt wrote. Plain data and functions: the sensor does the I/O.
"""

import json
from dataclasses import asdict, dataclass, field, replace

from anomaly_assets.ingestion.offsets import OffsetRange

#: Run outcomes as the sensor sees them.
SUCCEEDED, FAILED, IN_FLIGHT, UNKNOWN = "succeeded", "failed", "in_flight", "unknown"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 60.0
    max_delay_s: float = 3600.0
    #: A requested batch with no run after this long is requested again.
    lost_after_s: float = 900.0

    def delay(self, attempt: int) -> float:
        """Wait before attempt ``attempt + 1``: base, 2x base, 4x base ... capped."""
        return min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)


@dataclass(frozen=True)
class PendingBatch:
    batch_id: str
    topic_id: str
    ranges: tuple[OffsetRange, ...]
    attempt: int = 1
    requested_at: float = 0.0
    retry_at: float | None = None  # set once its run failed; None while a run is due


@dataclass
class SensorCursor:
    topic: str = ""
    topic_id: str = ""
    offsets: dict[int, int] = field(default_factory=dict)
    pending: dict[str, PendingBatch] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps(
            {
                "v": 2,
                "topic": self.topic,
                "topic_id": self.topic_id,
                "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
                "pending": {
                    b: {
                        **asdict(p),
                        "ranges": [list(asdict(r).values()) for r in p.ranges],
                    }
                    for b, p in sorted(self.pending.items())
                },
            }
        )

    @classmethod
    def decode(cls, raw: str | None, topic: str) -> "SensorCursor":
        """The cursor; the first version's plain ``{partition: offset}`` is read as offsets
        of ``topic`` with nothing pending."""
        if not raw:
            return cls(topic=topic)
        data = json.loads(raw)
        if data.get("v") != 2:
            return cls(topic=topic, offsets={int(p): int(o) for p, o in data.items()})
        pending = {}
        for bid, p in data["pending"].items():
            ranges = tuple(OffsetRange(*r) for r in p.pop("ranges"))
            pending[bid] = PendingBatch(ranges=ranges, **p)
        return cls(
            topic=data["topic"],
            topic_id=data["topic_id"],
            offsets={int(p): int(o) for p, o in data["offsets"].items()},
            pending=pending,
        )


@dataclass(frozen=True)
class Decision:
    """What the sensor does with one pending batch this tick."""

    action: str  # "done", "wait", "retry", "give_up"
    batch: PendingBatch
    message: str = ""


def decide(
    batch: PendingBatch, outcome: str, now: float, policy: RetryPolicy
) -> Decision:
    """Done on success; keep waiting while a run is in flight or a backoff runs; retry when
    the backoff is over; give up after ``max_attempts`` (the ledger check then shows the
    hole and a catch-up run fills it)."""
    if outcome == SUCCEEDED:
        return Decision("done", batch)
    if outcome == IN_FLIGHT:
        return Decision("wait", batch)
    if outcome == UNKNOWN and now - batch.requested_at < policy.lost_after_s:
        return Decision("wait", batch)
    if batch.attempt >= policy.max_attempts:
        return Decision(
            "give_up",
            batch,
            f"batch {batch.batch_id} failed {batch.attempt} times; not retried again",
        )
    if batch.retry_at is None:
        waiting = replace(batch, retry_at=now + policy.delay(batch.attempt))
        return Decision(
            "wait",
            waiting,
            f"batch {batch.batch_id} attempt {batch.attempt} {outcome}; retry in "
            f"{policy.delay(batch.attempt):.0f}s",
        )
    if now < batch.retry_at:
        return Decision("wait", batch)
    return Decision(
        "retry",
        replace(batch, attempt=batch.attempt + 1, requested_at=now, retry_at=None),
        f"batch {batch.batch_id}: attempt {batch.attempt + 1} of {policy.max_attempts}",
    )
