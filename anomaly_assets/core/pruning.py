"""Predicates that let Delta skip files: the days a batch touches, as event-time ranges.

Silver and gold files are written batch by batch, so each file covers a narrow event-time
span and Delta's per-file min/max statistics on ``event_time`` skip the rest. A batch with
late events touches a few extra days; listing those days (not one range from the oldest to
the newest) keeps a replayed event from 2001 from turning a read into a full scan.
"""

from collections.abc import Iterable
from datetime import date, timedelta


def day_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    """Contiguous runs of ``days`` as [first, last + 1 day) pairs, oldest first."""
    out: list[tuple[date, date]] = []
    for d in sorted(set(days)):
        if out and out[-1][1] == d:
            out[-1] = (out[-1][0], d + timedelta(days=1))
        else:
            out.append((d, d + timedelta(days=1)))
    return out


def days_predicate(column: str, days: Iterable[date]) -> str:
    """SQL selecting rows whose ``column`` (a timestamp) falls on one of ``days``;
    ``FALSE`` for no day."""
    ranges = day_ranges(days)
    if not ranges:
        return "FALSE"
    return " OR ".join(
        f"({column} >= TIMESTAMP'{lo.isoformat()}' AND {column} < TIMESTAMP'{hi.isoformat()}')"
        for lo, hi in ranges
    )


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def event_days(df, column: str = "event_time") -> set[date]:
    """The distinct UTC days of ``column`` in ``df`` (one small aggregation)."""
    from pyspark.sql import functions as F

    return {r[0] for r in df.select(F.to_date(column).alias("d")).distinct().collect()}


def event_spans(df, column: str = "event_time") -> list[tuple]:
    """Per UTC day of ``column`` in ``df``, its first and last value: the narrowest ranges
    holding every row, cut by day so that rows years apart do not make one range over the
    years between (one small aggregation)."""
    from pyspark.sql import functions as F

    rows = df.groupBy(F.to_date(column)).agg(F.min(column), F.max(column)).collect()
    return sorted((r[1], r[2]) for r in rows)


def spans_predicate(column: str, spans) -> str:
    """SQL selecting rows whose ``column`` falls in one of ``spans`` (bounds included);
    ``FALSE`` for none. Files are written batch by batch, so a span of an hour skips every
    file of other hours, where a whole day would read the day's files."""
    return (
        " OR ".join(
            f"({column} >= TIMESTAMP'{lo.isoformat()}' AND "
            f"{column} <= TIMESTAMP'{hi.isoformat()}')"
            for lo, hi in spans
        )
        or "FALSE"
    )
