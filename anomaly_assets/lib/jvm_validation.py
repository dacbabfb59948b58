"""The common path of validation as Spark SQL expressions, evaluated in the JVM.

Python's ``classify`` (lib/validation.py) is the reference: it is total and names every
reason. Calling it per row costs a Python round trip per message, so bronze first asks the
JVM whether a message is *plainly* valid: well-formed UTF-8 JSON with one flat object, only
contract fields, each of its exact JSON type, identifiers already in canonical form, an ISO
timestamp inside the policy's bounds. Those rows get their columns here, byte for byte what
``classify`` would return. Everything else (every invalid message, and valid ones in unusual
form: extra fields, IPv6, non-canonical UUIDs, escapes of surrogates, braces inside strings)
goes to ``classify``, so reason codes and details have one source. The property tests in
``test_jvm_validation`` hold the two paths to the same output.

Spark parses with ``try_parse_json`` (a VARIANT): it refuses duplicate keys, NaN and other
non-JSON, and keeps the JSON type of each value (an integer literal is BIGINT, ``3.0`` is a
DECIMAL), which is what the contract's type rules need.
"""

import sys
from datetime import timedelta

from pyspark.sql import Column
from pyspark.sql import functions as F

from anomaly_assets.contract import (
    EVENT_TYPES,
    INTEGER_BITS,
    MAX_FIELD_CHARS,
    MAX_MESSAGE_BYTES,
    OPTIONAL_FIELDS,
    REQUIRED_BY_EVENT_TYPE,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
)
from anomaly_assets.lib.validation import ValidationPolicy

_WS = r"[ \t\n\r]*"
#: One flat object: a brace at each end and none in between (so no trailing second value,
#: which Spark's parser would ignore and Python's refuses).
_ONE_FLAT_OBJECT = rf"^{_WS}\{{[^{{}}]*\}}{_WS}\z"
_SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F]"
_CANONICAL_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\z"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = rf"^{_OCTET}(\.{_OCTET}){{3}}\z"
_COUNTRY = r"^[A-Z]{2}\z"
#: The ISO forms both Python's ``fromisoformat`` and Spark's cast read the same way.
_ISO_TS = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-](0[0-9]|1[0-7]):[0-5][0-9])?\z"
)
_HAS_OFFSET = r"(Z|[+-][0-9]{2}:[0-9]{2})\z"
#: A decimal literal of at most 15 digits converts to the same double in Java and Python.
_SHORT_DECIMAL = r"^DECIMAL\(([0-9]|1[0-5]),"
_CONTRACT_FIELDS = (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)


def _json_type(parsed: Column, field: str) -> Column:
    """Spark's name for the JSON type of ``field``: NULL when absent, VOID for JSON null."""
    return F.schema_of_variant(F.try_variant_get(parsed, f"$.{field}", "variant"))


def _absent(parsed: Column, field: str) -> Column:
    return F.coalesce(_json_type(parsed, field) == "VOID", F.lit(True))


def _integer_ok(parsed: Column, field: str) -> Column:
    value = F.try_variant_get(parsed, f"$.{field}", "bigint")
    upper = 2 ** (INTEGER_BITS[field] - 1)
    return _absent(parsed, field) | (
        (_json_type(parsed, field) == "BIGINT") & value.between(0, upper - 1)
    )


def _amount_ok(parsed: Column) -> Column:
    kind = _json_type(parsed, "amount")
    value = F.try_variant_get(parsed, "$.amount", "double")
    finite = value.between(0.0, sys.float_info.max)
    # A zero written as a decimal may be -0.0 in Python, and a DOUBLE may be an integer
    # literal longer than the contract allows: both are left to the reference.
    exact = (kind == "BIGINT") | (kind.rlike(_SHORT_DECIMAL) & (value != 0.0))
    return _absent(parsed, "amount") | (finite & exact)


def _event_time(text: Column) -> Column:
    """The instant of an ISO timestamp; one without an offset is UTC, as in Python."""
    with_offset = F.when(text.rlike(_HAS_OFFSET), text).otherwise(
        F.concat(text, F.lit("Z"))
    )
    return with_offset.try_cast("timestamp")


def _interval(delta: timedelta) -> Column:
    return F.make_dt_interval(secs=F.lit(delta.total_seconds()))


def plainly_valid(policy: ValidationPolicy) -> tuple[Column, dict[str, Column]]:
    """(condition, columns): the condition holds only for messages ``classify`` accepts,
    and there the columns equal its output. Expects Spark's Kafka source columns."""
    text = F.col("value").cast("string")
    parsed = F.try_parse_json(text)
    string = {
        f: F.try_variant_get(parsed, f"$.{f}", "string")
        for f, kind in REQUIRED_FIELDS.items()
        if kind is str
    }
    event_time = _event_time(string["event_ts"])
    keys = F.map_keys(F.try_variant_get(parsed, "$", "map<string,variant>"))
    event_type = string["event_type"]
    needs = [
        event_type.isin(list(EVENT_TYPES)),
        *[
            (event_type != kind) | ~_absent(parsed, field)
            for kind, fields in REQUIRED_BY_EVENT_TYPE.items()
            for field in fields
        ],
    ]
    checks = [
        F.octet_length("value").between(1, MAX_MESSAGE_BYTES),
        F.is_valid_utf8(text),
        F.col("key").isNull() | F.is_valid_utf8(F.col("key").cast("string")),
        text.rlike(_ONE_FLAT_OBJECT),
        ~text.rlike(_SURROGATE_ESCAPE),
        parsed.isNotNull(),
        F.size(F.array_except(keys, F.array(*map(F.lit, _CONTRACT_FIELDS)))) == 0,
        *[
            (_json_type(parsed, f) == "STRING")
            & (F.char_length(string[f]) <= MAX_FIELD_CHARS)
            for f in string
        ],
        _json_type(parsed, "schema_version") == "BIGINT",
        F.try_variant_get(parsed, "$.schema_version", "bigint") == SCHEMA_VERSION,
        F.coalesce(_json_type(parsed, "success").isin("VOID", "BOOLEAN"), F.lit(True)),
        _amount_ok(parsed),
        *[
            _integer_ok(parsed, f)
            for f in ("items", "bytes_transferred", "duration_ms")
        ],
        *needs,
        string["event_id"].rlike(_CANONICAL_UUID),
        string["user_id"].rlike("[A-Za-z0-9]"),
        string["session_id"].rlike("[A-Za-z0-9]"),
        string["ip_address"].rlike(_CANONICAL_IPV4),
        string["country"].rlike(_COUNTRY),
        string["event_ts"].rlike(_ISO_TS),
        event_time >= F.lit(policy.min_event_time),
        F.col("timestamp") >= F.lit(policy.min_event_time),
        event_time <= F.col("timestamp") + _interval(policy.max_future_skew),
    ]
    condition = F.lit(True)
    for check in checks:
        condition = condition & F.coalesce(check, F.lit(False))
    columns = {
        **string,
        "schema_version": F.lit(SCHEMA_VERSION),
        "success": F.try_variant_get(parsed, "$.success", "boolean"),
        "amount": F.try_variant_get(parsed, "$.amount", "double"),
        "items": F.try_variant_get(parsed, "$.items", "int"),
        "bytes_transferred": F.try_variant_get(parsed, "$.bytes_transferred", "bigint"),
        "duration_ms": F.try_variant_get(parsed, "$.duration_ms", "int"),
        "event_time": event_time,
        "extra_fields": F.lit(None).cast("string"),
        "raw_value": text,
        "raw_value_b64": F.lit(None).cast("string"),
        "raw_preview": F.lit(None).cast("string"),
        "raw_size": F.octet_length("value"),
        "reason": F.lit(None).cast("string"),
        "reason_detail": F.lit(None).cast("string"),
    }
    return condition, columns
