"""One silver step from bounded state: the new bronze rows, the users' profiles and the few
silver rows the windows need, never the whole history.

``plan(...)`` decides what to write; the asset writes it (silver rows first, the profile
second) and records the watermark and profile version in its cursor. A retry reads the
profile as of the recorded version (Delta time travel), so redoing a step that had already
written part of its output computes the same rows again.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from anomaly_assets.core.pruning import days_between, days_predicate, spans_predicate
from anomaly_assets.silver.features import (
    EVENT_COLUMNS,
    LONGEST_WINDOW_S,
    RAW_WINDOW_S,
    country_summary,
    dedupe_within,
    featurize,
)


@dataclass(frozen=True)
class PartitionMark:
    """What silver has seen of one Kafka partition: its newest event time, and when (wall
    clock) a step last read events of it."""

    newest: datetime
    seen: datetime

    def to_state(self) -> dict:
        return {"newest": self.newest.isoformat(), "seen": self.seen.isoformat()}

    @classmethod
    def from_state(cls, state: dict) -> "PartitionMark":
        return cls(*(datetime.fromisoformat(state[k]) for k in ("newest", "seen")))


@dataclass
class SilverPlan:
    new: object  # deduplicated new rows (EVENT_COLUMNS)
    rows: object  # silver rows to upsert: the new ones and the ones they correct
    batches: list[str]
    days: set[date]  # event days of the new rows
    watermark: datetime | None  # before this step
    next_watermark: datetime | None
    late: int  # new rows older than the watermark
    #: by Kafka partition, this step's rows included
    partitions: dict[str, PartitionMark]


def drop_delivered(new, silver, spans, batches):
    """``new`` minus events silver already holds from another batch (a redelivery keeps its
    event time, so only files overlapping the new rows' ``event_spans`` are looked up)."""
    if silver is None:
        return new
    seen = (
        silver.filter(spans_predicate("event_time", spans))
        .filter(~silver.batch_id.isin(batches))
        .select("event_id")
    )
    return new.join(seen, "event_id", "left_anti")


def context_predicates(late_days, watermark, first_on_time) -> tuple[str, str]:
    """SQL selecting the silver rows the features need: (read in full, read as a summary).

    On-time rows need the hour (RAW_WINDOW_S) before the earliest of them and every row at
    or after the watermark (the "prior" part not yet in the profile, and the rows a new
    event may correct) in full; of the 23 hours before that, distinct_countries_24h needs
    only a ``country_summary``. Late rows need the 24 hours before each of them in full:
    the days holding late rows (``late_days``) and the day before, listed, so a replay from
    long ago reads a few old days and not the years in between. Without a watermark (no
    profile yet) everything is read in full.
    """
    full, summary = [], "FALSE"
    back = -(-LONGEST_WINDOW_S // 86400)  # whole days the longest window reaches
    late_days = {d - timedelta(days=i) for d in late_days for i in range(back + 1)}
    if first_on_time is not None:
        longest = first_on_time - timedelta(seconds=LONGEST_WINDOW_S)
        if watermark is None:
            full.append(f"event_time >= TIMESTAMP'{longest.isoformat()}'")
        else:
            raw = min(first_on_time - timedelta(seconds=RAW_WINDOW_S), watermark)
            full.append(f"event_time >= TIMESTAMP'{raw.isoformat()}'")
            summary = (
                f"event_time >= TIMESTAMP'{longest.isoformat()}' "
                f"AND event_time < TIMESTAMP'{raw.isoformat()}' "
                f"AND NOT ({days_predicate('event_time', late_days)})"
            )
    if late_days:
        full.append(days_predicate("event_time", late_days))
    return " OR ".join(f"({p})" for p in full) or "FALSE", summary


def advance_watermark(
    watermark: datetime | None,
    partitions: dict[str, PartitionMark],
    now: datetime,
    lateness_s: int,
    idle_s: int,
) -> datetime | None:
    """The watermark after a step: the newest event time of the partition furthest behind,
    less the allowed lateness; it never moves back.

    Each Kafka partition is its own ordered stream, so the watermark follows the one that
    lags most (as Flink and Spark combine several inputs' watermarks): a batch that reads
    further into one partition than into another cannot make the slower one's on-time
    events late. A partition no step has read events of for ``idle_s`` (wall clock) is idle,
    a key nobody writes to any more, and does not hold the others back; what it delivers
    later behind the watermark is late.
    """
    active = [
        m.newest
        for m in partitions.values()
        if now - m.seen <= timedelta(seconds=idle_s)
    ]
    if not active:
        return watermark
    candidate = min(active) - timedelta(seconds=lateness_s)
    return candidate if watermark is None or candidate > watermark else watermark


def plan(
    new_bronze,
    silver,
    profile,
    watermark,
    lateness_s: int,
    partitions: dict[str, PartitionMark] | None = None,
    idle_s: int = 3600,
    now: datetime | None = None,
) -> SilverPlan:
    """``partitions``: what earlier steps saw of each Kafka partition (cursor state)."""
    from pyspark.sql import functions as F

    new = dedupe_within(new_bronze.select(*EVENT_COLUMNS))
    on_time = (
        F.lit(True) if watermark is None else F.col("event_time") >= F.lit(watermark)
    )
    keys = new.groupBy(
        "batch_id",
        "partition",
        F.to_date("event_time").alias("day"),
        on_time.alias("on_time"),
    ).agg(
        F.min("event_time").alias("lo"),
        F.max("event_time").alias("hi"),
        F.max(F.col("event_time").cast("double")).alias("newest"),
    )
    keys = keys.collect()
    now = now or datetime.now(UTC)
    partitions = dict(partitions or {})
    for r in keys:
        p, hi = str(r["partition"]), datetime.fromtimestamp(r["newest"], UTC)
        before = partitions.get(p)
        partitions[p] = PartitionMark(max(before.newest, hi) if before else hi, now)
    batches = sorted({r["batch_id"] for r in keys})
    days = {r["day"] for r in keys}
    late_days = {r["day"] for r in keys if not r["on_time"]}
    spans = [
        (
            min(r["lo"] for r in keys if r["day"] == d),
            max(r["hi"] for r in keys if r["day"] == d),
        )
        for d in sorted(days)
    ]
    new = drop_delivered(new, silver, spans, batches).persist()
    ts = F.col("event_time").cast("double")
    first_on_time, n_late = new.agg(
        F.min(F.when(on_time, ts)), F.sum((~on_time).cast("int"))
    ).first()
    context = summary = None
    if silver is not None:
        users = F.broadcast(new.select("user_id").distinct())
        first = (
            None
            if first_on_time is None
            else datetime.fromtimestamp(first_on_time, UTC)
        )
        full, summarised = context_predicates(late_days, watermark, first)
        context = (
            silver.filter(full)
            .join(users, "user_id")
            .join(new.select("event_id"), "event_id", "left_anti")
        )
        summary = country_summary(
            silver.filter(summarised)
            .select("user_id", "country", "event_time", "event_type", "success")
            .join(users, "user_id")
        )
    return SilverPlan(
        new=new,
        rows=featurize(new, context, profile, watermark, summary),
        batches=batches,
        days=days,
        watermark=watermark,
        next_watermark=advance_watermark(
            watermark, partitions, now, lateness_s, idle_s
        ),
        late=n_late or 0,
        partitions=partitions,
    )


def to_fold(plan_: SilverPlan, silver):
    """Events the profile takes in this step: silver rows from the old watermark up to the
    new one (this step's rows are in silver by now) and the step's late rows."""
    lo, hi = plan_.watermark, plan_.next_watermark
    late = (
        plan_.new.filter(plan_.new.event_time < lo).select(*EVENT_COLUMNS)
        if lo is not None
        else None
    )
    if hi is None or (lo is not None and hi <= lo):
        return late
    first_day = lo.date() if lo is not None else min(plan_.days)
    window = silver.filter(
        days_predicate("event_time", days_between(first_day, hi.date()))
    )
    window = window.filter(window.event_time < hi)
    if lo is not None:
        window = window.filter(window.event_time >= lo)
    window = window.select(*EVENT_COLUMNS)
    return window if late is None else window.unionByName(late)
