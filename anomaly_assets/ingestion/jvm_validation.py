"""The common path of validation as Spark SQL expressions, evaluated in the JVM.

Python's ``classify`` (ingestion/validation.py) is the reference: it is total and names every
reason. Calling it per row costs a Python round trip per message, so bronze first asks the
JVM whether a message is *plainly* valid: well-formed UTF-8 JSON with one flat object, only
contract fields, each of its exact JSON type, identifiers already in canonical form, an ISO
timestamp inside the policy's bounds. Those rows get their columns here, byte for byte what
``classify`` would return. Everything else (every invalid message, and valid ones in unusual
form: extra fields, IPv6, non-canonical UUIDs, escapes of surrogates, braces inside strings)
goes to ``classify``, so reason codes and details have one source. The property tests in
``test_jvm_validation`` hold the two paths to the same output.

Spark parses each message once with ``try_parse_json`` (a VARIANT): it refuses duplicate
keys, NaN and other non-JSON, and keeps the JSON type of each value (an integer literal is
BIGINT, ``3.0`` a DECIMAL). One regular expression over ``schema_of_variant`` (keys sorted,
unusual keys quoted) checks the key set and every type at once; one cast of the object to a
struct extracts the values (per-field extraction was four times slower, and ``from_json``, a
second parse, slower too).
"""

import sys
from datetime import timedelta

from pyspark.sql import Column
from pyspark.sql import functions as F

from anomaly_assets.contract import (
    INTEGER_BITS,
    MAX_FIELD_CHARS,
    MAX_MESSAGE_BYTES,
    OPTIONAL_FIELDS,
    REQUIRED_BY_EVENT_TYPE,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
)
from anomaly_assets.ingestion.validation import SURROGATE_ESCAPE, ValidationPolicy

_WS = " \t\n\r"
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
_STRINGS = [f for f, kind in REQUIRED_FIELDS.items() if kind is str]
#: The JSON types (as schema_of_variant names them) taken in the JVM. A decimal literal of
#: at most 15 digits converts to the same double in Java and Python; a DOUBLE may be an
#: integer literal longer than the contract allows, so it is left to the reference.
_TYPES = {
    **dict.fromkeys(_STRINGS, "STRING"),
    **dict.fromkeys(INTEGER_BITS, "BIGINT"),
    "success": "BOOLEAN",
    "amount": r"BIGINT|DECIMAL\(([0-9]|1[0-5]),[0-9]+\)",
}
#: The struct each object is cast to, once its types are checked (amount as a double).
_VALUE_TYPES = {
    **dict.fromkeys(_STRINGS, "string"),
    **dict.fromkeys(INTEGER_BITS, "bigint"),
    "success": "boolean",
    "amount": "double",
}


def _schema_pattern() -> str:
    """``schema_of_variant`` of a contract object: required fields with their type, optional
    ones with theirs or JSON null (VOID), nothing else, in Spark's sorted key order."""
    parts = []
    for name in sorted(_TYPES):
        part = rf"(?:(?<=<)|, ){name}: "
        if name in OPTIONAL_FIELDS:
            parts.append(f"(?:{part}(?:{_TYPES[name]}|VOID))?")
        else:
            parts.append(f"{part}(?:{_TYPES[name]})")
    return rf"^OBJECT<{''.join(parts)}>\z"


def _one_flat_object(text: Column) -> Column:
    """Leading JSON whitespace, then the object, whose first closing brace is the message's
    last non-blank character. With a flat schema that rules out a trailing second value,
    which Spark's parser ignores and Python's refuses. Substring searches, not a regular
    expression: a pattern over the whole message cost as much as the parse."""
    return F.ltrim(text, F.lit(_WS)).startswith("{") & (
        F.instr(text, "}") == F.length(F.rtrim(text, F.lit(_WS)))
    )


def _no_surrogate_escape(text: Column) -> Column:
    return (F.instr(text, "\\u") == 0) | ~text.rlike(SURROGATE_ESCAPE.pattern)


def _event_time(text: Column) -> Column:
    """The instant of an ISO timestamp; one without an offset is UTC, as in Python."""
    with_offset = F.when(text.rlike(_HAS_OFFSET), text).otherwise(
        F.concat(text, F.lit("Z"))
    )
    return with_offset.try_cast("timestamp")


def _interval(delta: timedelta) -> Column:
    return F.make_dt_interval(secs=F.lit(delta.total_seconds()))


def _plain_condition(policy: ValidationPolicy) -> Column:
    text, v = F.col("_text"), F.col("_v")
    event_type, event_time, kafka_ts = (
        v["event_type"],
        F.col("_time"),
        F.col("timestamp"),
    )
    checks = [
        F.octet_length("value").between(1, MAX_MESSAGE_BYTES),
        F.is_valid_utf8(text),
        F.col("key").isNull() | F.is_valid_utf8(F.col("key").cast("string")),
        _one_flat_object(text),
        _no_surrogate_escape(text),
        F.col("_schema").rlike(_schema_pattern()),
        *[F.char_length(v[f]) <= MAX_FIELD_CHARS for f in _STRINGS],
        v["schema_version"] == SCHEMA_VERSION,
        # A zero amount may be -0.0 in Python; left to the reference.
        v["amount"].isNull()
        | ((v["amount"] > 0) & (v["amount"] <= sys.float_info.max)),
        *[
            v[f].isNull() | v[f].between(0, 2 ** (bits - 1) - 1)
            for f, bits in INTEGER_BITS.items()
            if f != "schema_version"
        ],
        event_type.isin(list(policy.event_types)),
        *[
            (event_type != kind) | v[field].isNotNull()
            for kind, fields in REQUIRED_BY_EVENT_TYPE.items()
            for field in fields
        ],
        v["event_id"].rlike(_CANONICAL_UUID),
        v["user_id"].rlike("[A-Za-z0-9]"),
        v["session_id"].rlike("[A-Za-z0-9]"),
        v["ip_address"].rlike(_CANONICAL_IPV4),
        v["country"].rlike(_COUNTRY),
        v["event_ts"].rlike(_ISO_TS),
        event_time >= F.lit(policy.min_event_time),
        kafka_ts >= F.lit(policy.min_event_time),
        event_time <= kafka_ts + _interval(policy.max_future_skew),
    ]
    condition = F.lit(True)
    for check in checks:
        condition = condition & F.coalesce(check, F.lit(False))
    return condition


def typed_in_jvm(raw_df, policy: ValidationPolicy):
    """Spark's Kafka source rows with ``_plain`` (true only for messages ``classify``
    accepts) and ``_v``, their values. Persist the result before filtering on ``_plain``:
    Spark pushes a filter below the projection that defines it, repeating the parse."""
    text = F.col("value").cast("string")
    struct = ", ".join(f"{f} {t}" for f, t in _VALUE_TYPES.items())
    parsed = raw_df.withColumn("_text", text).withColumn(
        "_json", F.try_parse_json("_text")
    )
    values = parsed.withColumns(
        {
            "_schema": F.schema_of_variant("_json"),
            "_v": F.try_variant_get("_json", "$", f"struct<{struct}>"),
        }
    ).withColumn("_time", _event_time(F.col("_v.event_ts")))
    return values.withColumn("_plain", _plain_condition(policy))


def typed_columns() -> dict[str, Column]:
    """The validated columns of a plainly valid row, over ``typed_in_jvm``'s frame."""
    return {
        **{f: F.col(f"_v.{f}") for f in _VALUE_TYPES},
        "event_time": F.col("_time"),
        "extra_fields": F.lit(None),
        "raw_value": F.col("_text"),
        "raw_value_b64": F.lit(None),
        "raw_preview": F.lit(None),
        "raw_size": F.octet_length("value"),
        "reason": F.lit(None),
        "reason_detail": F.lit(None),
    }
