"""The alert outbox: every alert is a row before it is sent, and its row says what became
of it.

An alert's row is inserted once, by its idempotency key (a MERGE that inserts only keys it
does not hold), so a re-run adds nothing. Sending goes in two commits per run: the rows
about to be sent are marked ``sending`` with their attempt counted, then sent, then marked
``delivered``, ``retry`` (with the next attempt's time, backing off) or ``failed``. A run
killed between the two finds ``sending`` rows: for Slack's Web API the message is looked up
by its key first; PagerDuty and the webhook receive the same key again (PagerDuty dedupes
by it, a webhook receiver can); email and Slack incoming webhooks may then show the alert
twice, the only case where a duplicate can reach a person.

Statuses: pending, sending, retry, delivered, failed (attempts spent or refused for good),
suppressed, snoozed, rate_limited (never sent; ``reason`` says why).
"""

from datetime import UTC, datetime, timedelta

from anomaly_assets.core import delta_sql

OUTBOX_SCHEMA = (
    "key string, channel string, channel_type string, kind string, subject string, "
    "incident_id string, user_id string, state string, update_of string, status string, "
    "reason string, attempts int, next_attempt_at timestamp, last_error string, "
    "receiver_ref string, content string, created_at timestamp, updated_at timestamp, "
    "delivered_at timestamp"
)
OUTBOX_COLUMNS = tuple(c.split()[0] for c in OUTBOX_SCHEMA.split(", "))
DUE = ("pending", "retry", "sending")
#: The first retry waits this long, each next one twice as long, up to MAX_BACKOFF.
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)


def backoff(attempts: int) -> timedelta:
    return min(FIRST_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


def frame(spark, rows: list[dict]):
    return spark.createDataFrame(
        [tuple(r.get(c) for c in OUTBOX_COLUMNS) for r in rows], OUTBOX_SCHEMA
    )


def insert_new(spark, path: str, rows: list[dict]) -> None:
    """Add the rows whose key the outbox does not hold (all of them on a new table)."""
    if not rows:
        return
    if delta_sql.exists(spark, path):
        delta_sql.merge(spark, path, frame(spark, rows), "t.key = s.key")
    else:
        frame(spark, rows).write.format("delta").save(path)
        delta_sql.created(path)


def update(spark, path: str, rows: list[dict]) -> None:
    """Replace the rows of these keys with ``rows`` (whole rows)."""
    if rows:
        delta_sql.merge(
            spark,
            path,
            frame(spark, rows),
            "t.key = s.key",
            update_when="true",
            insert=False,
        )


def rows_where(outbox, condition) -> list[dict]:
    """Outbox rows matching ``condition`` as dicts (times as UTC datetimes)."""
    from pyspark.sql import functions as F

    times = ("next_attempt_at", "created_at", "updated_at", "delivered_at")
    rows = (
        outbox.filter(condition)
        .withColumns({t: F.unix_micros(t) for t in times})
        .collect()
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return [
        {
            **r.asDict(),
            **{
                t: None if r[t] is None else epoch + timedelta(microseconds=r[t])
                for t in times
            },
        }
        for r in rows
    ]
