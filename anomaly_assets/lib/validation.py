"""Validate raw Kafka values against the event contract; one verdict per message.

Runs inside Spark's ``mapInArrow`` on executors, so it is plain Python with no Dagster.
A message is either a typed event row or a quarantine row with a machine-readable
``reason`` (code) and ``reason_detail`` (field and message) plus its raw bytes, base64-encoded.
"""

import base64
import json
import re
import uuid
from datetime import UTC, datetime

from anomaly_assets.contract import (
    EVENT_TYPES,
    MAX_FIELD_CHARS,
    MAX_MESSAGE_BYTES,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
)

#: Reason codes written to bronze_quarantine.reason.
REASONS = (
    "empty_message",
    "oversized",
    "invalid_utf8",
    "invalid_json",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "out_of_range",
    "unsupported_schema_version",
)

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CONTRACT_FIELDS = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)


class Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _type_ok(value, expected) -> bool:
    if isinstance(value, bool) and expected is not bool:
        return False  # JSON true is not a number
    return isinstance(value, expected)


def parse_ts(raw: str) -> datetime:
    ts = datetime.fromisoformat(raw)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def validate_event(value: bytes | None) -> dict:
    """The parsed, typed event of a valid message; raises ``Invalid`` otherwise."""
    if not value:
        raise Invalid("empty_message", "the message has no value")
    if len(value) > MAX_MESSAGE_BYTES:
        raise Invalid(
            "oversized", f"message is {len(value)} bytes (max {MAX_MESSAGE_BYTES})"
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("invalid_utf8", f"byte {exc.start}: {exc.reason}") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid("invalid_json", f"{exc.msg} at char {exc.pos}") from None
    if not isinstance(event, dict):
        raise Invalid(
            "invalid_json", f"expected a JSON object, got {type(event).__name__}"
        )
    for name, expected in REQUIRED_FIELDS.items():
        if event.get(name) is None:
            raise Invalid("missing_field", name)
        if not _type_ok(event[name], expected):
            raise Invalid("wrong_type", f"{name}: {type(event[name]).__name__}")
    for name, expected in OPTIONAL_FIELDS.items():
        if event.get(name) is not None and not _type_ok(event[name], expected):
            raise Invalid("wrong_type", f"{name}: {type(event[name]).__name__}")
    for name in REQUIRED_FIELDS:
        if isinstance(event[name], str) and len(event[name]) > MAX_FIELD_CHARS:
            raise Invalid(
                "oversized", f"{name}: {len(event[name])} chars (max {MAX_FIELD_CHARS})"
            )
    if event["schema_version"] != SCHEMA_VERSION:
        raise Invalid("unsupported_schema_version", str(event["schema_version"]))
    if event["event_type"] not in EVENT_TYPES:
        raise Invalid("out_of_range", f"event_type: {event['event_type'][:40]!r}")
    try:
        uuid.UUID(event["event_id"])
    except ValueError:
        raise Invalid("invalid_value", "event_id: not a UUID") from None
    try:
        ts = parse_ts(event["event_ts"])
    except ValueError:
        raise Invalid("invalid_value", "event_ts: not ISO-8601") from None
    if not _COUNTRY.match(event["country"]):
        raise Invalid("invalid_value", "country: not ISO alpha-2")
    for name in ("amount", "items", "bytes_transferred", "duration_ms"):
        if event.get(name) is not None and event[name] < 0:
            raise Invalid("out_of_range", f"{name}: negative")
    extra = {k: v for k, v in event.items() if k not in _CONTRACT_FIELDS}
    return {
        **{k: event.get(k) for k in REQUIRED_FIELDS},
        **{k: event.get(k) for k in OPTIONAL_FIELDS},
        "amount": None if event.get("amount") is None else float(event["amount"]),
        "event_time": ts,
        "extra_fields": json.dumps(extra, sort_keys=True) if extra else None,
    }


PARSED_COLUMNS = (*REQUIRED_FIELDS, *OPTIONAL_FIELDS, "event_time", "extra_fields")


def classify(value: bytes | None) -> tuple[dict | None, str | None, str | None]:
    """(event, None, None) for a valid message, (None, reason, detail) otherwise."""
    try:
        return validate_event(value), None, None
    except Invalid as exc:
        return None, exc.reason, exc.detail


def encode_raw(value: bytes | None) -> str | None:
    """Raw bytes as base64: any byte sequence survives a string column."""
    return None if value is None else base64.b64encode(value).decode("ascii")


def preview(value: bytes | None, limit: int = 200) -> str | None:
    """A readable start of the raw bytes for people browsing quarantine."""
    return None if value is None else value[:limit].decode("utf-8", errors="replace")
