"""The alert outbox: every alert is a row before it is sent, and its row says what became
of it.

An alert's row is inserted once, by its idempotency key (a MERGE that inserts only keys it
does not hold), so a re-run adds nothing. Sending goes in two commits per run: the rows
about to be sent are marked ``sending`` with their attempt counted, then sent, then marked
``delivered``, ``retry`` (with the next attempt's time, backing off) or ``failed``. A run
killed between the two finds ``sending`` rows, and a send whose answer never came leaves a
``retry`` row: before any second attempt, Slack's Web API is asked for the message by its
key; PagerDuty receives the same incident (``dedup_key``) and the webhook the same
``Idempotency-Key`` again, which they dedupe by; email and Slack incoming webhooks may then
show the alert twice, the only case where a duplicate can reach a person.

Statuses: pending, sending, retry, delivered, failed (attempts spent or refused for good),
suppressed, snoozed, rate_limited, cancelled (never sent; ``reason`` says why).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
TIMES = ("next_attempt_at", "created_at", "updated_at", "delivered_at")
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
    return delta_sql.collect_utc(outbox.filter(condition), TIMES)


#: Alerts that were not sent. They do not count as alerted: the next change of their
#: incident may alert, and the same state alerts once the snooze or the hour is over.
NOT_SENT = ("suppressed", "snoozed", "rate_limited", "cancelled")
#: Of those, the ones a later run may still send when the same state comes again.
HELD = ("snoozed", "rate_limited")


@dataclass
class History:
    """What the outbox holds for the subjects of a batch, as the triggers need it."""

    rows: dict[str, dict] = field(default_factory=dict)  # by key
    #: incident -> states alerted (sent or on their way), oldest first
    alerted: dict[str, list[str]] = field(default_factory=dict)
    #: user -> (risk level, as_of) alerted
    risk_alerted: dict[str, list[tuple[str, datetime]]] = field(default_factory=dict)
    #: incident -> its first alert delivered to PagerDuty (what a resolve follows)
    triggered: dict[str, dict] = field(default_factory=dict)
    #: keys of alerts sent or on their way (an update may follow them)
    sent: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, prior: list[dict]) -> "History":
        h = cls(rows={r["key"]: r for r in prior})
        for row in sorted(prior, key=lambda r: (r["created_at"], r["key"])):
            if row["status"] in NOT_SENT:
                continue
            h.sent.add(row["key"])
            if row["kind"] == "incident":
                h.alerted.setdefault(row["subject"], []).append(row["state"])
                if row["channel_type"] == "pagerduty" and row["status"] == "delivered":
                    h.triggered.setdefault(row["subject"], row)
            elif row["kind"] == "risk":
                level, as_of = row["state"].split(":", 2)[1:]
                h.risk_alerted.setdefault(row["subject"], []).append(
                    (level, datetime.fromisoformat(as_of))
                )
        return h

    def split(self, rows: list[dict], gone: list[dict], now: datetime):
        """(rows to insert, rows to change): new keys are inserted; a held alert that
        is due now is re-armed; an undelivered PagerDuty trigger of an incident that is
        gone is cancelled, so a resolve cannot overtake it."""
        new, changed = [], []
        for row in rows:
            old = self.rows.get(row["key"])
            if old is None:
                new.append(row)
            elif old["status"] in HELD and row["status"] == "pending":
                changed.append({**old, **row, "created_at": old["created_at"]})
        gone_ids = {g["incident_id"] for g in gone}
        for old in self.rows.values():
            if (
                old["subject"] in gone_ids
                and old["kind"] == "incident"
                and old["channel_type"] == "pagerduty"
                and old["status"] in ("pending", "retry")
            ):
                changed.append(
                    {
                        **old,
                        "status": "cancelled",
                        "reason": "the incident was gone before the trigger was delivered",
                        "updated_at": now,
                    }
                )
        return new, changed
