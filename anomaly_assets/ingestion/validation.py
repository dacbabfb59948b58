"""Validate raw Kafka values against the event contract; one verdict per message, always.

Runs inside Spark's ``mapInArrow`` on executors, so it is plain Python with no Dagster.
``classify`` is total: whatever the bytes, it returns either a typed event that fits bronze's
columns or a reason code (``REASONS``) with a detail naming the field. An unexpected
exception inside the checks becomes the ``validator_error`` reason instead of failing the run.
"""

import base64
import ipaddress
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from anomaly_assets.contract import (
    EVENT_TYPES,
    INTEGER_BITS,
    MAX_FIELD_CHARS,
    MAX_INTEGER_DIGITS,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_BYTES,
    NON_NEGATIVE_FIELDS,
    OPTIONAL_FIELDS,
    REQUIRED_BY_EVENT_TYPE,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
)

#: Reason code -> (what it means, what an operator does). Written to bronze_quarantine.reason.
REASONS: dict[str, tuple[str, str]] = {
    "empty_message": (
        "The record has no value (null or zero bytes), e.g. a tombstone.",
        "Nothing to recover; find the producer that sends empty records.",
    ),
    "oversized": (
        f"The message is over {MAX_MESSAGE_BYTES} bytes or a text field over "
        + f"{MAX_FIELD_CHARS} characters.",
        "Fix the producer (truncate user agents, split payloads).",
    ),
    "invalid_utf8": (
        "The bytes are not UTF-8.",
        "Fix the producer's encoding; the raw bytes are kept in raw_value_b64.",
    ),
    "invalid_json": (
        "Not JSON, truncated JSON, or JSON that is not an object.",
        "Fix the producer's serialiser.",
    ),
    "duplicate_key": (
        "A JSON object names the same key twice (readers disagree on which wins).",
        "Fix the producer's serialiser.",
    ),
    "too_deeply_nested": (
        f"JSON nesting deeper than {MAX_JSON_DEPTH} levels.",
        "Flatten the extra fields the producer sends.",
    ),
    "non_finite_number": (
        "NaN, Infinity or a number too large for a double (1e400).",
        "Fix the producer; JSON has no NaN or Infinity.",
    ),
    "number_too_long": (
        f"An integer literal with more than {MAX_INTEGER_DIGITS} digits.",
        "Fix the producer.",
    ),
    "unencodable_string": (
        "A string holds a lone UTF-16 surrogate (\\ud800), which no column can store.",
        "Fix the producer's string escaping.",
    ),
    "newer_schema_version": (
        f"schema_version is newer than the {SCHEMA_VERSION} this deployment reads; "
        + "checked before any field.",
        "Upgrade anomaly_assets, then re-ingest the quarantined offsets.",
    ),
    "unsupported_schema_version": (
        "schema_version is not one this deployment reads (below 1 or retired).",
        "Fix the producer's schema_version.",
    ),
    "missing_field": (
        "A required field is absent or null.",
        "Fix the producer; the detail names the field.",
    ),
    "missing_field_for_event_type": (
        (
            "A field the event type needs is absent (purchase: amount, login: success, "
            "file_download / api_call: bytes_transferred)."
        ),
        "Fix the producer; the detail names the event type and field.",
    ),
    "wrong_type": (
        "A field has the wrong JSON type (a string for a number, true for a number...).",
        "Fix the producer; the detail names the field and the type sent.",
    ),
    "integer_out_of_range": (
        (
            "An integer does not fit its bronze column (int32 for items, duration_ms, "
            "schema_version; int64 for bytes_transferred)."
        ),
        "Fix the producer.",
    ),
    "negative_value": (
        "amount, items, bytes_transferred or duration_ms is negative.",
        "Fix the producer.",
    ),
    "unknown_event_type": (
        "event_type is not one of the contract's event types.",
        "Add the type to the contract, or fix the producer.",
    ),
    "event_type_not_in_stream": (
        "event_type is a contract type, but not one this stream's contract carries.",
        "Route the event to its own topic, or add the type to the stream's contract.",
    ),
    "invalid_id": (
        "event_id is not a UUID, or user_id / session_id is empty or blank.",
        "Fix the producer; non-canonical UUIDs are accepted and normalised.",
    ),
    "invalid_ip": (
        "ip_address is not an IPv4 or IPv6 address.",
        "Fix the producer.",
    ),
    "invalid_country": (
        "country is not an ISO 3166 alpha-2 code (two capital letters).",
        "Fix the producer.",
    ),
    "invalid_timestamp": (
        "event_ts is not an ISO-8601 timestamp.",
        "Fix the producer.",
    ),
    "timestamp_out_of_range": (
        (
            "event_ts overflows, is before the earliest plausible time (2000-01-01 by "
            "default) or is more than the allowed skew (1 day) after the Kafka timestamp."
        ),
        "Fix the producer's clock; widen ValidationPolicy for old backfills.",
    ),
    "validator_error": (
        "The validator itself raised on this message (a bug in anomaly_assets).",
        "Report it with the raw bytes; re-ingest the offsets after the fix.",
    ),
    "unencodable_row": (
        "The validated row could not be converted to bronze's Arrow schema (a bug).",
        "Report it with the raw bytes; re-ingest the offsets after the fix.",
    ),
}

_COUNTRY = re.compile(r"^[A-Z]{2}$")
#: A JSON escape of a UTF-16 surrogate: only these can put a lone surrogate in a string.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_CONTRACT_FIELDS = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)


@dataclass(frozen=True)
class ValidationPolicy:
    """What a stream accepts beyond the contract's types: plausibility bounds for event_ts
    (replays of old history pass: the lower bound is a fixed date and the upper bound is
    relative to each message's own Kafka timestamp) and the event types it carries."""

    min_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future_skew: timedelta = timedelta(days=1)
    #: The event types this stream carries (a stream's contract may take a subset).
    event_types: tuple[str, ...] = EVENT_TYPES


DEFAULT_POLICY = ValidationPolicy()


class Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _type_ok(value, expected) -> bool:
    if isinstance(value, bool) and expected is not bool:
        return False  # JSON true is not a number
    return isinstance(value, expected)


def _pairs(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        dupe = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise Invalid("duplicate_key", repr(dupe)[:80])
    return obj


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise Invalid("number_too_long", f"{len(text)} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Invalid("non_finite_number", f"{text[:40]} overflows a double")
    return value


def _parse_constant(name: str):
    raise Invalid("non_finite_number", name)


def _loads(text: str):
    try:
        return json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        raise Invalid("invalid_json", f"{exc.msg} at char {exc.pos}") from None
    except RecursionError:
        raise Invalid(
            "too_deeply_nested", "beyond the parser's recursion limit"
        ) from None


def _check_nesting(event: dict, check_strings: bool) -> None:
    """Depth of nested containers, and (when the text escapes a surrogate) every string."""
    stack = [(event, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise Invalid("too_deeply_nested", f"depth over {MAX_JSON_DEPTH}")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if check_strings:
                for text in (key, value):
                    if isinstance(text, str):
                        try:
                            text.encode("utf-8")
                        except UnicodeEncodeError:
                            raise Invalid(
                                "unencodable_string", f"near {key!r}"[:80]
                            ) from None
            if isinstance(value, dict | list):
                stack.append((value, depth + 1))


def parse_ts(raw: str) -> datetime:
    ts = datetime.fromisoformat(raw)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def _check_ts(raw: str, kafka_ts: datetime | None, policy: ValidationPolicy):
    try:
        ts = parse_ts(raw)
    except OverflowError:
        raise Invalid("timestamp_out_of_range", "event_ts overflows UTC") from None
    except ValueError:
        raise Invalid("invalid_timestamp", "event_ts: not ISO-8601") from None
    if ts < policy.min_event_time:
        raise Invalid(
            "timestamp_out_of_range",
            f"event_ts {ts.isoformat()} is before {policy.min_event_time.isoformat()}",
        )
    if (
        kafka_ts is not None
        and kafka_ts >= policy.min_event_time
        and ts > kafka_ts + policy.max_future_skew
    ):
        raise Invalid(
            "timestamp_out_of_range",
            f"event_ts {ts.isoformat()} is more than {policy.max_future_skew} after "
            f"the Kafka timestamp {kafka_ts.isoformat()}",
        )
    return ts


def _check_fields(event: dict, event_types: tuple[str, ...] = EVENT_TYPES) -> None:
    version = event.get("schema_version")
    if _type_ok(version, int) and version > SCHEMA_VERSION:
        raise Invalid("newer_schema_version", f"{version} > {SCHEMA_VERSION}"[:60])
    for name, expected in REQUIRED_FIELDS.items():
        if event.get(name) is None:
            raise Invalid("missing_field", name)
        if not _type_ok(event[name], expected):
            raise Invalid("wrong_type", f"{name}: {type(event[name]).__name__}")
    for name, expected in OPTIONAL_FIELDS.items():
        if event.get(name) is not None and not _type_ok(event[name], expected):
            raise Invalid("wrong_type", f"{name}: {type(event[name]).__name__}")
    if version != SCHEMA_VERSION:
        raise Invalid("unsupported_schema_version", str(version))
    for name in REQUIRED_FIELDS:
        if isinstance(event[name], str) and len(event[name]) > MAX_FIELD_CHARS:
            raise Invalid(
                "oversized", f"{name}: {len(event[name])} chars (max {MAX_FIELD_CHARS})"
            )
    for name, bits in INTEGER_BITS.items():
        value = event.get(name)
        if value is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise Invalid("integer_out_of_range", f"{name}: outside int{bits}")
    for name in NON_NEGATIVE_FIELDS:
        if event.get(name) is not None and event[name] < 0:
            raise Invalid("negative_value", name)
    if event["event_type"] not in EVENT_TYPES:
        raise Invalid("unknown_event_type", repr(event["event_type"][:40]))
    if event["event_type"] not in event_types:
        raise Invalid("event_type_not_in_stream", event["event_type"])
    for name in REQUIRED_BY_EVENT_TYPE.get(event["event_type"], ()):
        if event.get(name) is None:
            raise Invalid(
                "missing_field_for_event_type", f"{event['event_type']}: {name}"
            )


def _normalise_ids(event: dict) -> None:
    try:
        event["event_id"] = str(uuid.UUID(event["event_id"]))
    except ValueError:
        raise Invalid("invalid_id", "event_id: not a UUID") from None
    for name in ("user_id", "session_id"):
        if not event[name].strip():
            raise Invalid("invalid_id", f"{name}: empty")
    try:
        event["ip_address"] = str(ipaddress.ip_address(event["ip_address"]))
    except ValueError:
        raise Invalid("invalid_ip", repr(event["ip_address"][:60])) from None
    if not _COUNTRY.match(event["country"]):
        raise Invalid("invalid_country", repr(event["country"][:20]))


def validate_event(
    value: bytes | None,
    kafka_ts: datetime | None = None,
    policy: ValidationPolicy = DEFAULT_POLICY,
) -> dict:
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
    event = _loads(text)
    if not isinstance(event, dict):
        raise Invalid(
            "invalid_json", f"expected a JSON object, got {type(event).__name__}"
        )
    _check_nesting(event, check_strings=bool(SURROGATE_ESCAPE.search(text)))
    _check_fields(event, policy.event_types)
    _normalise_ids(event)
    ts = _check_ts(event["event_ts"], kafka_ts, policy)
    extra = {k: v for k, v in event.items() if k not in _CONTRACT_FIELDS}
    return {
        **{k: event.get(k) for k in REQUIRED_FIELDS},
        **{k: event.get(k) for k in OPTIONAL_FIELDS},
        "amount": None if event.get("amount") is None else float(event["amount"]),
        "event_time": ts,
        "extra_fields": json.dumps(extra, sort_keys=True) if extra else None,
    }


PARSED_COLUMNS = (*REQUIRED_FIELDS, *OPTIONAL_FIELDS, "event_time", "extra_fields")


def classify(
    value: bytes | None,
    kafka_ts: datetime | None = None,
    policy: ValidationPolicy = DEFAULT_POLICY,
) -> tuple[dict | None, str | None, str | None]:
    """(event, None, None) for a valid message, (None, reason, detail) otherwise. Never raises."""
    try:
        return validate_event(value, kafka_ts, policy), None, None
    except Invalid as exc:
        return None, exc.reason, exc.detail
    except Exception as exc:  # noqa: BLE001 - totality: a bug here must not fail the run
        return None, "validator_error", f"{type(exc).__name__}: {exc}"[:300]


def encode_raw(value: bytes | None) -> str | None:
    """Raw bytes as base64: any byte sequence survives a string column."""
    return None if value is None else base64.b64encode(value).decode("ascii")


def preview(value: bytes | None, limit: int = 200) -> str | None:
    """A readable start of the raw bytes for people browsing quarantine."""
    return None if value is None else value[:limit].decode("utf-8", errors="replace")
