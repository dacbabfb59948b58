"""The event contract, message by message: one test per hostile class, then properties."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly_assets.ingestion import validation
from anomaly_assets.ingestion.bronze import _arrow_schema, _to_batch, _validated_row
from anomaly_assets.ingestion.validation import (
    REASONS,
    ValidationPolicy,
    classify,
    encode_raw,
    preview,
)

GOOD = {
    "event_id": "2f1e0c1a-3b9e-4c9e-9a51-8d7d2b7c1a11",
    "event_type": "purchase",
    "event_ts": "2026-11-01T10:00:00.250Z",
    "user_id": "u1",
    "session_id": "s1",
    "ip_address": "10.0.0.1",
    "country": "US",
    "device_type": "mobile",
    "user_agent": "UA",
    "amount": 12,
    "items": 1,
    "duration_ms": 900,
    "schema_version": 1,
}
KAFKA_TS = datetime(2026, 11, 1, 10, 0, 5, tzinfo=UTC)


def enc(event) -> bytes:
    return json.dumps(event).encode()


def with_raw(field: str, literal: str) -> bytes:
    """GOOD with ``field`` set to a raw JSON literal (NaN, 1e400, a surrogate escape...)."""
    return enc({**GOOD, field: "@@"}).replace(b'"@@"', literal.encode())


def nested(depth: int):
    value = 0
    for _ in range(depth):
        value = [value]
    return value


def test_valid_event_is_typed_and_keeps_extra_fields():
    event, reason, _ = classify(enc({**GOOD, "campaign": "x"}), KAFKA_TS)
    assert reason is None
    assert event["amount"] == 12.0 and isinstance(event["amount"], float)
    assert event["event_time"].isoformat() == "2026-11-01T10:00:00.250000+00:00"
    assert json.loads(event["extra_fields"]) == {"campaign": "x"}
    assert event["success"] is None


#: (message, reason, detail) of every hostile class; the end-to-end test sends them to Kafka.
HOSTILE = [
    (b"", "empty_message", "no value"),
    (None, "empty_message", "no value"),
    (b"user=u1&ok=1", "invalid_json", "Expecting value"),
    (enc(GOOD)[:40], "invalid_json", ""),
    (b"[1, 2]", "invalid_json", "JSON object"),
    (enc(GOOD).replace(b'"UA"', b'"U\xff\xfeA"'), "invalid_utf8", "byte"),
    (
        enc({k: v for k, v in GOOD.items() if k != "user_id"}),
        "missing_field",
        "user_id",
    ),
    (enc({**GOOD, "event_ts": None}), "missing_field", "event_ts"),
    (enc({**GOOD, "event_ts": 1700000000}), "wrong_type", "event_ts"),
    (enc({**GOOD, "duration_ms": "fast"}), "wrong_type", "duration_ms"),
    (enc({**GOOD, "items": True}), "wrong_type", "items"),
    (enc({**GOOD, "items": 2.0}), "wrong_type", "items"),
    (enc({**GOOD, "success": "yes"}), "wrong_type", "success"),
    (enc({**GOOD, "schema_version": "one"}), "wrong_type", "schema_version"),
    (enc({**GOOD, "user_agent": "A" * 70_000}), "oversized", "message"),
    (enc({**GOOD, "user_agent": "A" * 5000}), "oversized", "user_agent"),
    (enc({**GOOD, "schema_version": 0}), "unsupported_schema_version", "0"),
    (enc({**GOOD, "event_type": "teleport"}), "unknown_event_type", "teleport"),
    (enc({**GOOD, "amount": -5}), "negative_value", "amount"),
    (enc({**GOOD, "duration_ms": -1}), "negative_value", "duration_ms"),
    (enc({**GOOD, "country": "usa"}), "invalid_country", "usa"),
    # non-finite numbers
    (with_raw("amount", "NaN"), "non_finite_number", "NaN"),
    (with_raw("amount", "Infinity"), "non_finite_number", "Infinity"),
    (with_raw("amount", "-Infinity"), "non_finite_number", "Infinity"),
    (with_raw("amount", "1e400"), "non_finite_number", "1e400"),
    (with_raw("promo", "-1e999"), "non_finite_number", "1e999"),
    # integers outside the bronze column, and huge-digit integers
    (
        enc({**GOOD, "items": 10**12}),
        "integer_out_of_range",
        "items: outside int32",
    ),
    (enc({**GOOD, "duration_ms": 2**31}), "integer_out_of_range", "int32"),
    (
        {**GOOD, "event_type": "file_download", "bytes_transferred": 2**63},
        "integer_out_of_range",
        "bytes_transferred: outside int64",
    ),
    (enc({**GOOD, "items": 10**60}), "number_too_long", "61 digits"),
    (with_raw("promo", "9" * 5000), "number_too_long", "5000 digits"),
    # deep nesting: ours, and the parser's recursion limit
    (enc({**GOOD, "extra": nested(40)}), "too_deeply_nested", "depth"),
    (with_raw("extra", "[" * 30_000 + "]" * 30_000), "too_deeply_nested", ""),
    # lone surrogates (Arrow cannot encode them), in a value and in a key
    (with_raw("user_agent", '"ab\\ud800cd"'), "unencodable_string", "user_agent"),
    (with_raw("extra", '{"\\udfff": 1}'), "unencodable_string", ""),
    # timestamps: overflow, too old, too far after the Kafka timestamp, not ISO
    (
        enc({**GOOD, "event_ts": "0001-01-01T00:00:00+01:00"}),
        "timestamp_out_of_range",
        "overflows",
    ),
    (
        enc({**GOOD, "event_ts": "1999-12-31T23:59:59Z"}),
        "timestamp_out_of_range",
        "before 2000-01-01",
    ),
    (
        enc({**GOOD, "event_ts": "2026-11-02T10:00:06Z"}),
        "timestamp_out_of_range",
        "after the Kafka timestamp",
    ),
    (enc({**GOOD, "event_ts": "yesterday"}), "invalid_timestamp", "event_ts"),
    (enc({**GOOD, "event_ts": "+10000-01-01"}), "invalid_timestamp", "ISO"),
    # fields an event type needs
    (
        enc({k: v for k, v in GOOD.items() if k != "amount"}),
        "missing_field_for_event_type",
        "purchase: amount",
    ),
    (
        enc({**GOOD, "event_type": "login"}),
        "missing_field_for_event_type",
        "login: success",
    ),
    (
        enc({**GOOD, "event_type": "file_download"}),
        "missing_field_for_event_type",
        "file_download: bytes_transferred",
    ),
    (
        enc({**GOOD, "event_type": "api_call", "bytes_transferred": None}),
        "missing_field_for_event_type",
        "api_call: bytes_transferred",
    ),
    # duplicate keys, at the top and nested
    (
        enc(GOOD)[:-1] + b', "user_id": "u2"}',
        "duplicate_key",
        "user_id",
    ),
    (with_raw("extra", '{"a": 1, "a": 2}'), "duplicate_key", "'a'"),
    # ids: not a UUID, empty or blank user / session
    (enc({**GOOD, "event_id": "nope"}), "invalid_id", "event_id"),
    (enc({**GOOD, "event_id": ""}), "invalid_id", "event_id"),
    (enc({**GOOD, "user_id": ""}), "invalid_id", "user_id: empty"),
    (enc({**GOOD, "session_id": " \t"}), "invalid_id", "session_id: empty"),
    # IP addresses
    (enc({**GOOD, "ip_address": "999.1.1.1"}), "invalid_ip", "999.1.1.1"),
    (enc({**GOOD, "ip_address": "localhost"}), "invalid_ip", "localhost"),
    (enc({**GOOD, "ip_address": ""}), "invalid_ip", ""),
    # a newer schema is reported as such before any field check
    (enc({"schema_version": 2}), "newer_schema_version", "2 > 1"),
    (enc({**GOOD, "schema_version": 10**15}), "newer_schema_version", ""),
]


@pytest.mark.parametrize(("value", "reason", "detail"), HOSTILE)
def test_each_contract_breach_has_its_reason(value, reason, detail):
    if isinstance(value, dict):
        value = enc(value)
    event, got, got_detail = classify(value, KAFKA_TS)
    assert event is None
    assert got == reason, got_detail
    assert detail in got_detail
    assert got in REASONS


@pytest.mark.parametrize(
    ("field", "given", "stored"),
    [
        ("event_id", "2F1E0C1A-3B9E-4C9E-9A51-8D7D2B7C1A11", GOOD["event_id"]),
        ("event_id", "{2f1e0c1a-3b9e-4c9e-9a51-8d7d2b7c1a11}", GOOD["event_id"]),
        ("event_id", "urn:uuid:2f1e0c1a3b9e4c9e9a518d7d2b7c1a11", GOOD["event_id"]),
        ("ip_address", "2001:DB8:0:0::1", "2001:db8::1"),
        ("ip_address", "::1", "::1"),
        ("user_agent", "\U0001f600 ok", "\U0001f600 ok"),
    ],
)
def test_non_canonical_values_are_normalised(field, given, stored):
    event, reason, detail = classify(enc({**GOOD, field: given}), KAFKA_TS)
    assert reason is None, detail
    assert event[field] == stored


def test_surrogate_pairs_are_valid_text():
    event, reason, _ = classify(with_raw("user_agent", '"\\ud83d\\ude00"'), KAFKA_TS)
    assert reason is None
    assert event["user_agent"] == "\U0001f600"


def test_timestamp_bounds_allow_replays_and_are_configurable():
    old = enc({**GOOD, "event_ts": "2001-02-03T04:05:06Z"})
    assert classify(old, datetime.now(UTC))[1] is None, "a replay of old history"
    assert (
        classify(enc({**GOOD, "event_ts": "2026-11-02T09:00:00Z"}), KAFKA_TS)[1] is None
    )
    no_kafka_ts = enc({**GOOD, "event_ts": "2030-01-01T00:00:00Z"})
    assert classify(no_kafka_ts, None)[1] is None
    nineties = enc({**GOOD, "event_ts": "1995-06-01T00:00:00Z"})
    assert classify(nineties, KAFKA_TS)[1] == "timestamp_out_of_range"
    lenient = ValidationPolicy(
        min_event_time=datetime(1990, 1, 1, tzinfo=UTC),
        max_future_skew=timedelta(days=30),
    )
    assert classify(nineties, KAFKA_TS, lenient)[1] is None
    soon = enc({**GOOD, "event_ts": "2026-11-20T00:00:00Z"})
    assert classify(soon, KAFKA_TS)[1] == "timestamp_out_of_range"
    assert classify(soon, KAFKA_TS, lenient)[1] is None


def test_a_bug_in_a_check_is_a_reason_not_a_crash(monkeypatch):
    def broken(event):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(validation, "_normalise_ids", broken)
    event, reason, detail = classify(enc(GOOD), KAFKA_TS)
    assert (event, reason) == (None, "validator_error")
    assert "ZeroDivisionError: boom" in detail


def test_a_row_arrow_refuses_becomes_quarantine_not_a_failed_batch():
    schema = _arrow_schema()
    good = _validated_row(
        enc(GOOD), b"u1", "t", 0, 7, KAFKA_TS, validation.DEFAULT_POLICY
    )
    bad = {
        **good,
        "offset": 8,
        "items": 2**40,
    }  # what a validator bug would let through
    batch = _to_batch([good, bad], schema).to_pylist()
    assert [r["offset"] for r in batch] == [7, 8]
    assert batch[0]["reason"] is None and batch[0]["items"] == 1
    assert batch[1]["reason"] == "unencodable_row"
    assert base64.b64decode(batch[1]["raw_value_b64"]) == enc(GOOD)


def test_raw_bytes_survive_encoding():
    raw = b"\xff\x00{not json"
    assert base64.b64decode(encode_raw(raw)) == raw
    assert preview(raw).endswith("{not json")


# --- properties --------------------------------------------------------------------------

#: JSON values a hostile producer can send, including what plain JSON does not allow.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**80), max_value=10**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["\ud800", "x\udfffy", "", " ", "NaN", "1e400", "::1", "US"]),
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def mutated_events(draw):
    """A valid event with some fields replaced, removed or added."""
    event = dict(GOOD)
    event["event_type"] = draw(st.sampled_from(validation.EVENT_TYPES))
    event.update(success=True, bytes_transferred=2048)
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from([*GOOD, "success", "bytes_transferred", "x"]))
        action = draw(st.sampled_from(["replace", "remove"]))
        if action == "remove":
            event.pop(field, None)
        else:
            event[field] = draw(json_values)
    return json.dumps(event).encode("utf-8", "surrogatepass")


def _bronze_row_fits(value: bytes, ts) -> None:
    row = _validated_row(value, None, "t", 0, 1, ts, validation.DEFAULT_POLICY)
    pa.RecordBatch.from_pylist(
        [row], schema=_arrow_schema()
    )  # raises if it does not fit


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_a_verdict(value):
    event, reason, detail = classify(value, KAFKA_TS)
    assert (event is None) == (reason is not None)
    assert reason is None or reason in REASONS
    assert reason != "validator_error", detail
    _bronze_row_fits(value, KAFKA_TS)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events(), st.sampled_from([None, KAFKA_TS]))
def test_mutated_events_get_a_verdict_and_accepted_ones_fit_bronze(value, ts):
    _, reason, detail = classify(value, ts)
    assert reason is None or reason in REASONS
    assert reason != "validator_error", detail
    _bronze_row_fits(value, ts)
