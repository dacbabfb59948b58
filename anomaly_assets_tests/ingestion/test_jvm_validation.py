"""The JVM fast path of validation against Python's reference, row for row.

Every message goes through ``validate`` (JVM path for plainly valid messages, Python for the
rest) and through ``_validated_row`` alone; the two must agree on every column, bit for bit.
Messages are hostile on purpose: near-valid events in every unusual spelling the two parsers
might read differently (number forms, -0.0, timestamps, UUIDs, IPs, whitespace, trailing
values, braces and escapes inside strings, duplicate keys), plus arbitrary bytes.
"""

import itertools
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly_assets.contract import EVENT_TYPES
from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.ingestion import validation
from anomaly_assets.ingestion.bronze import (
    KAFKA_SOURCE_SCHEMA,
    VALIDATED_COLUMNS,
    _validated_row,
    stage,
    validate,
)
from anomaly_assets_tests.ingestion.test_validation import (
    GOOD,
    KAFKA_TS,
    mutated_events,
)

#: Spellings of each field that are valid, almost valid, or read differently by parsers.
_SPELLINGS = {
    "amount": [
        "12",
        "12.5",
        "0.1",
        "1e2",
        "1E-2",
        "-0.0",
        "0.0",
        "-0",
        "0",
        "12.0",
        "-3",
        "1e400",
        "1e308",
        "123456789012345678",
        "0.1000000000000000055511151231257827",
        "99999999999999999999999999999999999999999",
        "3.14159265358979",
        '"12"',
        "true",
    ],
    "items": ["1", "1.0", "-1", "2147483647", "2147483648", "1e2", "null", '"1"'],
    "duration_ms": ["0", "900", "-0", "4294967296", "9.5", "false"],
    "bytes_transferred": ["2048", "9223372036854775807", "9223372036854775808", "-5"],
    "schema_version": ["1", "1.0", "2", "0", "true", '"1"', "10000000000000000"],
    "success": ["true", "false", "null", "1", '"true"'],
    "event_ts": [
        f'"{t}"'
        for t in (
            "2026-11-01T10:00:00Z",
            "2026-11-01T10:00:00",
            "2026-11-01T10:00:00.5Z",
            "2026-11-01T10:00:00.123456+05:30",
            "2026-11-01T10:00:00.1234567Z",
            "2026-11-01T10:00:00-17:59",
            "2026-11-01T10:00:00+18:00",
            "2026-11-01T10:00:00+23:00",
            "2026-11-01 10:00:00Z",
            "2026-11-01",
            "2026-02-30T10:00:00Z",
            "2026-11-01T24:00:00Z",
            "2026-11-01T10:00:60Z",
            "2026-11-02T10:00:06Z",
            "2026-11-02T10:00:05Z",
            "1999-12-31T23:59:59Z",
            "9999-12-31T23:00:00-05:00",
            "2026-11-01T10:00:00+0100",
            "2026-11-01T10:00Z",
            "2026-11-01T10:00:00z",
            "+2026-11-01T10:00:00Z",
            "2026-11-01T10:00:00Z\\n",
        )
    ],
    "event_id": [
        f'"{u}"'
        for u in (
            GOOD["event_id"],
            GOOD["event_id"].upper(),
            f"{{{GOOD['event_id']}}}",
            GOOD["event_id"].replace("-", ""),
            GOOD["event_id"] + "\\n",
            "not-a-uuid",
        )
    ],
    "ip_address": [
        f'"{ip}"'
        for ip in (
            "10.0.0.1",
            "255.255.255.255",
            "256.0.0.1",
            "01.2.3.4",
            "1.2.3",
            "::1",
            "2001:DB8::1",
            "10.0.0.1\\n",
            " 10.0.0.1",
            "0.0.0.0",
        )
    ],
    "country": ['"US"', '"us"', '"USA"', '"US\\n"', '"\\u0055S"', '""'],
    "user_id": ['"u1"', '" "', '""', '"\\u00a0"', '"\\u2003x"', '"\\t"', '"é"'],
    "user_agent": [
        '"UA"',
        '"a{b}"',
        '"\\ud83d\\ude00"',
        '"\\ud800"',
        '"x\\"y"',
        '"\\u0000"',
        '"' + "a" * 2048 + '"',
        '"' + "a" * 2049 + '"',
        '"' + "é" * 2048 + '"',
    ],
    "event_type": [
        '"purchase"',
        '"login"',
        '"file_download"',
        '"Login"',
        '"x"',
        "null",
    ],
}
_FRAMES = [
    "{body}",
    " \n{body}\t",
    "{body} {{}}",
    '{body}{{"a":1}}',
    "[{body}]",
    "{body}x",
    "\ufeff{body}",
    "{body}//c",
]


def _spell(fields: dict[str, str], frame: str = "{body}") -> bytes:
    body = ",".join(f'"{k}":{v}' for k, v in fields.items())
    return frame.format(body="{" + body + "}").encode("utf-8", "surrogatepass")


def _valid_fields() -> dict[str, str]:
    fields = {k: json.dumps(v) for k, v in {**GOOD, "success": True}.items()}
    fields["bytes_transferred"] = "2048"
    return fields


@st.composite
def spelled_events(draw) -> bytes:
    """A valid event as JSON text with some fields spelled differently, reordered, doubled,
    removed or added, inside a frame (whitespace, trailing values...)."""
    fields = _valid_fields()
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(sorted(_SPELLINGS)))
        fields[name] = draw(st.sampled_from(_SPELLINGS[name]))
    if draw(st.booleans()):
        fields.pop(draw(st.sampled_from(sorted(fields))))
    if draw(st.integers(0, 9)) == 0:
        fields["campaign"] = '"x"'
    if draw(st.booleans()):
        fields = dict(draw(st.permutations(list(fields.items()))))
    frame = draw(st.sampled_from(_FRAMES)) if draw(st.integers(0, 4)) == 0 else "{body}"
    value = _spell(fields, frame)
    if draw(st.integers(0, 9)) == 0:  # a duplicate key
        name = draw(st.sampled_from(sorted(fields)))
        value = value.replace(b"{", f'{{"{name}":{fields[name]},'.encode(), 1)
    return value


_messages = st.one_of(
    spelled_events(),
    spelled_events(),
    mutated_events(),
    st.binary(max_size=200),
    st.none(),
)
_TIMESTAMPS = [KAFKA_TS, datetime(1970, 1, 1, tzinfo=UTC), KAFKA_TS + timedelta(days=3)]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a.replace(tzinfo=None) == b.astimezone(UTC).replace(tzinfo=None)
    return a == b and type(a) is type(b)


def _both_paths(
    spark,
    values: list[bytes | None],
    kafka_ts: list[datetime],
    policy=validation.DEFAULT_POLICY,
):
    rows = [
        (b"k", value, "t", 0, offset, ts.replace(tzinfo=None))
        for offset, (value, ts) in enumerate(zip(values, kafka_ts, strict=True))
    ]
    frame = spark.createDataFrame(rows, KAFKA_SOURCE_SCHEMA)
    staged = stage(frame, policy).persist()
    got = {r["offset"]: r for r in validate(staged, "b1", policy=policy).collect()}
    assert sorted(got) == list(range(len(values))), "one row per message"
    for offset, (value, ts) in enumerate(zip(values, kafka_ts, strict=True)):
        want = _validated_row(value, b"k", "t", 0, offset, ts, policy)
        row = got[offset]
        for name, _ in VALIDATED_COLUMNS:
            if name == "kafka_ts":
                continue
            assert _same(row[name], want[name]) or (
                row[name] is None and want[name] is None
            ), (name, row[name], want[name], row["validated_in"], value)
    return got


def test_each_spelling_alone_agrees(spark):
    """Every listed spelling of every field, and every frame, once on an otherwise valid
    event of each type that needs it: the cases the random combinations might miss."""
    values = [_spell(_valid_fields(), frame) for frame in _FRAMES]
    for name, spellings in _SPELLINGS.items():
        for spelling, event_type in itertools.product(spellings, ("purchase", "login")):
            fields = {
                **_valid_fields(),
                "event_type": f'"{event_type}"',
                name: spelling,
            }
            values.append(_spell(fields))
    got = _both_paths(spark, values, [KAFKA_TS] * len(values))
    paths = [r["validated_in"] for r in got.values()]
    assert paths.count("jvm") > len(values) // 4, "the JVM path must be exercised"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(
        st.tuples(_messages, st.sampled_from(_TIMESTAMPS)), min_size=1, max_size=120
    )
)
def test_jvm_path_agrees_with_python_on_hostile_messages(spark, batch):
    values, stamps = zip(*batch, strict=True)
    _both_paths(spark, list(values), list(stamps))


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.sets(st.sampled_from(EVENT_TYPES), min_size=1),
    st.lists(
        st.tuples(_messages, st.sampled_from(_TIMESTAMPS)), min_size=1, max_size=40
    ),
)
def test_a_streams_event_types_agree_on_both_paths(spark, types, batch):
    """A stream carrying some event types: both paths agree, message by message, and an
    event the contract accepts is kept exactly when its type is the stream's, else
    quarantined as event_type_not_in_stream."""
    policy = replace(validation.DEFAULT_POLICY, event_types=tuple(sorted(types)))
    one_of_each = [
        (_spell({**_valid_fields(), "event_type": f'"{t}"'}), KAFKA_TS)
        for t in EVENT_TYPES
    ]
    values, stamps = zip(*[*batch, *one_of_each], strict=True)
    got = _both_paths(spark, list(values), list(stamps), policy)
    accepted = 0
    for offset, (value, ts) in enumerate(zip(values, stamps, strict=True)):
        contract = _validated_row(
            value, b"k", "t", 0, offset, ts, validation.DEFAULT_POLICY
        )
        if contract["reason"] is not None:
            continue
        accepted += 1
        if contract["event_type"] in types:
            assert got[offset]["reason"] is None
        else:
            assert got[offset]["reason"] == "event_type_not_in_stream"
    assert accepted >= len(EVENT_TYPES), "each type once at least"


def test_generated_events_take_the_jvm_path(spark):
    """The speed-up is real only if ordinary events are plainly valid: all of the generator's
    well-formed events must be typed in the JVM, and agree with Python."""
    gen = EventGenerator(seed=5, anomaly_rate=0.05, malformed_rate=0.05)
    messages = list(itertools.islice(iter(gen), 3000))
    stamps = [
        datetime.fromisoformat(json.loads(m.value)["event_ts"]) + timedelta(seconds=1)
        if m.label is None or m.label.kind != "malformed"
        else KAFKA_TS
        for m in messages
    ]
    got = _both_paths(spark, [m.value for m in messages], stamps)
    malformed = {
        i for i, m in enumerate(messages) if m.label and m.label.kind == "malformed"
    }
    paths = {i: r["validated_in"] for i, r in got.items()}
    assert all(paths[i] == "jvm" for i in paths if i not in malformed)
    assert all(paths[i] == "python" for i in malformed)
    assert len(malformed) > 50
