"""analyst_feedback: what analysts answered about incidents, one row per answer.

The triage page appends rows with the ``deltalake`` package (no JVM): each append is one
Delta commit, and appends from several writers at once all land (they cannot conflict:
none reads what another writes). Nothing is updated or deleted, so a row is the record of
who said what, when and why, and which model's scores they saw. The pipeline reads the
table (alerts/assets.py): a dismissal suppresses its pattern for its window.
"""

import time
import uuid
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from anomaly_assets.core.verdicts import FEEDBACK_TABLE

TABLE = FEEDBACK_TABLE
#: Commits tried per append (see append).
ATTEMPTS = 5
ACTIONS = ("confirm", "dismiss", "snooze", "assign", "comment", "reopen")
_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        ("feedback_id", pa.string()),
        ("recorded_at", _TS),
        ("analyst", pa.string()),
        ("role", pa.string()),
        ("action", pa.string()),
        ("incident_id", pa.string()),
        ("user_id", pa.string()),
        ("threat_type", pa.string()),
        ("threat_types", pa.list_(pa.string())),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("comment", pa.string()),
        ("assignee", pa.string()),
        ("until", _TS),
        ("model_version", pa.string()),
        ("max_severity", pa.float64()),
        ("event_ids", pa.list_(pa.string())),
        ("based_on", pa.string()),
        ("top_features", pa.list_(pa.string())),
    ]
)


class Feedback(BaseModel):
    """One answer. ``threat_types`` is the pattern a dismissal or snooze covers (empty:
    any of the user's); ``based_on`` the last answer the analyst had seen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analyst: str = Field(min_length=1, max_length=200)
    role: str
    action: Literal[ACTIONS]
    incident_id: str | None = None
    user_id: str = Field(min_length=1, max_length=500)
    threat_type: str | None = None
    threat_types: list[str] = Field(default_factory=list)
    status: str | None = Field(default=None, description="The incident's, then.")
    reason: str = Field(default="", max_length=2000)
    comment: str = Field(default="", max_length=5000)
    assignee: str | None = None
    until: datetime | None = None
    model_version: str | None = None
    max_severity: float | None = None
    event_ids: list[str] = Field(default_factory=list)
    based_on: str | None = None
    top_features: list[str] = Field(
        default_factory=list, description="The incident's, then: its pattern's lead."
    )


def append(
    path: str, answers: list[Feedback], now: datetime | None = None
) -> list[str]:
    """Append ``answers`` in one commit; returns their feedback ids."""
    now = now or datetime.now(UTC)
    rows = [
        {"feedback_id": uuid.uuid4().hex, "recorded_at": now, **a.model_dump()}
        for a in answers
    ]
    append_rows(path, rows, SCHEMA, merge=True)
    return [r["feedback_id"] for r in rows]


def append_rows(
    path: str, rows: list[dict], schema: pa.Schema, merge: bool = False
) -> None:
    """One append commit of ``rows``; appends rebase on each other, and only writers
    racing to create the table conflict (its first commit): the loser appends to the
    winner's. ``merge``: a column ``schema`` has and the table lacks (an older release's)
    is added; a writer of the older release then fails on the wider table."""
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    table = pa.Table.from_pylist(rows, schema=schema)
    for attempt in range(ATTEMPTS):
        try:
            write_deltalake(
                path, table, mode="append", schema_mode="merge" if merge else None
            )
            return
        except CommitFailedError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def read(path: str, filters=None) -> pa.Table:
    """The table's rows (``filters``: deltalake's DNF), or none when it does not exist."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(path).to_pyarrow_table(filters=filters)
    except TableNotFoundError:
        return SCHEMA.empty_table()
