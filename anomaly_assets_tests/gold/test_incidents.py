"""Incidents kept incrementally equal one pass over gold, however the anomalies arrive:
in any cut into batches, out of order, and with anomalies later re-scored as normal."""

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomaly_assets.core import delta_sql
from anomaly_assets.gold.attack import DEFAULT_TECHNIQUES
from anomaly_assets.gold.incidents import (
    INCIDENT_COLUMNS,
    build_incidents,
    rebuild,
    write,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
GAP_S = 1800.0
#: Top features of the rows: a behaviour feature (no threat) before threat features.
TOP = ("hour_of_day", "failed_logins_10m", "bytes_log", "events_1m")
GOLD = (
    "event_id string, user_id string, event_time timestamp, event_type string, "
    "is_anomaly boolean, severity_percentile double, anomaly_score double, status string, "
    "top_features array<string>, batch_id string"
)


def _row(i, user, minute, anomalous, batch):
    return (
        f"e{i}",
        user,
        T0 + timedelta(minutes=minute),
        ("login", "purchase", "search")[i % 3],
        anomalous,
        90.0 + i % 10,
        0.5 + (i % 7) / 100,
        "CRITICAL" if i % 5 == 0 else "WARNING",
        [TOP[(i + k) % 4] for k in range(2)],
        batch,
    )


events = st.lists(
    st.tuples(
        # ids SQL must quote: a quote, a backslash (escapes in Spark's literals)
        st.sampled_from(["u1", "o'hara", "DOMAIN\\alice"]),
        st.integers(0, 600),  # minute: gaps around the 30-minute cut are common
        st.integers(0, 2),  # the batch it arrives in
        st.booleans(),  # re-scored as normal in a later batch
    ),
    min_size=1,
    max_size=40,
)


def _snapshot(df):
    rows = df.select(*INCIDENT_COLUMNS).collect()
    return sorted(tuple(r) for r in rows)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(events=events)
def test_incremental_incidents_equal_one_pass(spark, tmp_path_factory, events):
    root = tmp_path_factory.mktemp("incidents")
    gold_path, path = str(root / "gold"), str(root / "incidents")
    batches: dict[int, list] = {}
    for i, (user, minute, batch, revoked) in enumerate(events):
        batches.setdefault(batch, []).append(
            ("insert", _row(i, user, minute, True, f"b{batch}"))
        )
        if revoked:  # a correction re-scores it two batches later
            batches.setdefault(batch + 2, []).append(
                ("update_postimage", _row(i, user, minute, False, f"b{batch}"))
            )
    for b in sorted(batches):
        rows = spark.createDataFrame([r for _, r in batches[b]], GOLD)
        kinds = spark.createDataFrame(
            [(r[0], k) for k, r in batches[b]], "event_id string, _change_type string"
        )
        if delta_sql.exists(spark, gold_path):
            delta_sql.merge(
                spark, gold_path, rows, "t.event_id = s.event_id", update_when="true"
            )
        else:
            rows.write.format("delta").save(gold_path)
        changed = rows.join(kinds, "event_id").filter(
            "is_anomaly OR _change_type = 'update_postimage'"
        )
        gold = spark.read.format("delta").load(gold_path)
        stored = (
            spark.read.format("delta").load(path)
            if delta_sql.exists(spark, path)
            else None
        )
        rebuilt = rebuild(gold, changed, stored, GAP_S, DEFAULT_TECHNIQUES)
        if rebuilt is not None:
            write(path, rebuilt, exists=stored is not None)
    gold = spark.read.format("delta").load(gold_path)
    expected = _snapshot(
        build_incidents(gold.filter("is_anomaly"), GAP_S, DEFAULT_TECHNIQUES)
    )
    got = _snapshot(spark.read.format("delta").load(path))
    assert got == expected
    # and the one-pass incidents are what the definition says
    for inc in expected:
        lo, hi = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in inc[2:4])
        times = [
            m
            for u, m, _, revoked in events
            if u == inc[1] and not revoked and lo <= T0 + timedelta(minutes=m) <= hi
        ]
        assert inc[4] == len(times) and len(inc[5]) == inc[4]


def test_a_burst_is_one_incident_and_a_pause_starts_another(spark):
    rows = [_row(i, "u1", m, True, "b1") for i, m in enumerate([0, 10, 39, 70, 71])]
    got = build_incidents(
        spark.createDataFrame(rows, GOLD), GAP_S, DEFAULT_TECHNIQUES
    ).orderBy("first_seen")
    first, second = got.collect()
    assert first["event_ids"] == ["e0", "e1", "e2"] and first["event_count"] == 3
    assert second["event_ids"] == ["e3", "e4"]
    assert first["status"] == "CRITICAL" and second["status"] == "WARNING"
    assert first["event_types"] == ["login", "purchase", "search"]
    # counts 2, 2, 1; ties by name
    assert first["top_features"] == ["bytes_log", "failed_logins_10m", "events_1m"]
    assert first["max_severity"] == 92.0
    # each event's threat is its strongest top feature's that has one: e0 hour_of_day,
    # failed_logins_10m -> stuffing; e1 failed_logins_10m; e2 bytes_log -> exfiltration
    assert first["threat_types"] == ["credential_stuffing", "data_exfiltration"]
    assert first["attack_techniques"] == ["T1048", "T1110.004", "T1567"]
    assert first["attack_tactics"] == ["Credential Access", "Exfiltration"]
    # e3 events_1m -> bots (T1119, Collection); e4 hour_of_day, failed_logins -> stuffing
    assert second["threat_types"] == ["bot_activity", "credential_stuffing"]
    assert second["attack_techniques"] == ["T1110.004", "T1119"]


def test_a_stream_mapping_replaces_a_threats_techniques_and_no_threat_is_none(spark):
    rows = [_row(0, "u1", 0, True, "b1")]
    rows[0] = (*rows[0][:8], ["hour_of_day", "seconds_since_prev"], "b1")
    mapping = {**DEFAULT_TECHNIQUES, "credential_stuffing": ("T1110.003", "T1110.004")}
    (none,) = build_incidents(
        spark.createDataFrame(rows, GOLD), GAP_S, mapping
    ).collect()
    assert none["threat_types"] == [] and none["attack_techniques"] == []
    rows = [_row(1, "u1", 0, True, "b1")]  # failed_logins_10m first
    (one,) = build_incidents(
        spark.createDataFrame(rows, GOLD), GAP_S, mapping
    ).collect()
    assert one["attack_techniques"] == ["T1110.003", "T1110.004"]
