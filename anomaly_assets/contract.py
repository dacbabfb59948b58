"""The event contract (docs/local_services.md, "Event contract"): the JSON value of each Kafka message, keyed by user_id.

One place for the field list, so the generator that writes events and the bronze layer that
validates them cannot drift apart.
"""

SCHEMA_VERSION = 1

EVENT_TYPES = (
    "login",
    "logout",
    "page_view",
    "search",
    "add_to_cart",
    "purchase",
    "password_reset",
    "file_download",
    "api_call",
)

ANOMALY_TYPES = (
    "credential_stuffing",
    "impossible_travel",
    "data_exfiltration",
    "high_value_purchase",
    "bot_activity",
    "account_takeover",
)

MALFORMED_KINDS = (
    "not_json",
    "truncated_json",
    "missing_field",
    "wrong_type",
    "oversized",
    "invalid_utf8",
)

#: Fields every event carries, with their JSON types.
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "event_id": str,
    "event_type": str,
    "event_ts": str,
    "user_id": str,
    "session_id": str,
    "ip_address": str,
    "country": str,
    "device_type": str,
    "user_agent": str,
    "schema_version": int,
}

#: Fields present only for some event types (REQUIRED_BY_EVENT_TYPE says which need them).
OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "success": bool,
    "amount": (int, float),
    "items": int,
    "bytes_transferred": int,
    "duration_ms": int,
}

#: Fields an event type cannot do without (a purchase has an amount, and so on).
REQUIRED_BY_EVENT_TYPE: dict[str, tuple[str, ...]] = {
    "purchase": ("amount",),
    "login": ("success",),
    "file_download": ("bytes_transferred",),
    "api_call": ("bytes_transferred",),
}

#: Integer fields and the bronze column type that must hold them (bits of a signed integer).
INTEGER_BITS: dict[str, int] = {
    "schema_version": 32,
    "items": 32,
    "duration_ms": 32,
    "bytes_transferred": 64,
}

#: Numeric fields that cannot be negative.
NON_NEGATIVE_FIELDS = ("amount", "items", "bytes_transferred", "duration_ms")

#: Longest accepted text value and message, in bytes; larger ones are quarantined as oversized.
MAX_FIELD_CHARS = 2048
MAX_MESSAGE_BYTES = 64 * 1024
#: Deepest nesting of JSON objects / arrays accepted (the event itself is depth 1).
MAX_JSON_DEPTH = 16
#: Longest integer literal accepted, in digits (int64 has 19).
MAX_INTEGER_DIGITS = 40
