"""The event contract, message by message."""

import base64
import json

import pytest

from anomaly_assets.lib.validation import classify, encode_raw, preview

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


def enc(event) -> bytes:
    return json.dumps(event).encode()


def test_valid_event_is_typed_and_keeps_extra_fields():
    event, reason, _ = classify(enc({**GOOD, "campaign": "x"}))
    assert reason is None
    assert event["amount"] == 12.0 and isinstance(event["amount"], float)
    assert event["event_time"].isoformat() == "2026-11-01T10:00:00.250000+00:00"
    assert json.loads(event["extra_fields"]) == {"campaign": "x"}
    assert event["success"] is None


@pytest.mark.parametrize(
    ("value", "reason", "detail"),
    [
        (b"", "empty_message", "no value"),
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
        (enc({**GOOD, "success": "yes"}), "wrong_type", "success"),
        (enc({**GOOD, "user_agent": "A" * 70_000}), "oversized", "message"),
        (enc({**GOOD, "user_agent": "A" * 5000}), "oversized", "user_agent"),
        (enc({**GOOD, "schema_version": 2}), "unsupported_schema_version", "2"),
        (enc({**GOOD, "event_type": "teleport"}), "out_of_range", "event_type"),
        (enc({**GOOD, "amount": -5}), "out_of_range", "amount"),
        (enc({**GOOD, "event_id": "nope"}), "invalid_value", "event_id"),
        (enc({**GOOD, "event_ts": "yesterday"}), "invalid_value", "event_ts"),
        (enc({**GOOD, "country": "usa"}), "invalid_value", "country"),
    ],
)
def test_each_contract_breach_has_its_reason(value, reason, detail):
    event, got, got_detail = classify(value)
    assert event is None
    assert got == reason
    assert detail in got_detail


def test_raw_bytes_survive_encoding():
    raw = b"\xff\x00{not json"
    assert base64.b64decode(encode_raw(raw)) == raw
    assert preview(raw).endswith("{not json")
