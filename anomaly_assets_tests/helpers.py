"""Small helpers shared by tests."""

import itertools
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition
from hypothesis import HealthCheck, settings

from anomaly_assets.ingestion.offsets import fetch_offsets


def consume_all(
    bootstrap: str, topic: str
) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    """Every message of ``topic`` keyed by (partition, offset), read by explicit assignment."""
    starts, ends = fetch_offsets({"bootstrap.servers": bootstrap}, topic, 10)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
    out: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    want = sum(ends[p] - starts[p] for p in ends)
    while len(out) < want:
        msg = consumer.poll(10)
        assert msg is not None, f"timed out after {len(out)} of {want} messages"
        assert msg.error() is None, msg.error()
        out[(msg.partition(), msg.offset())] = (msg.key(), msg.value())
    consumer.close()
    return out


# Hand-made gold and silver rows: two anomaly patterns plus normal events.
GOLD_SCHEMA = (
    "event_id string, user_id string, event_type string, event_time timestamp, "
    "country string, device_type string, batch_id string, anomaly_score double, "
    "severity_percentile double, is_anomaly boolean, status string, model_name string, "
    "model_version string, feature_contributions map<string,double>, "
    "top_features array<string>, scoring_stage string"
)
SILVER_SCHEMA = (
    "event_id string, event_time timestamp, session_id string, ip_address string, country string, "
    "device_type string, user_agent string, success boolean, amount double, items int, "
    "bytes_transferred long, duration_ms int, batch_id string"
)
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def hand_made_batch(batch, n_stuffing, n_exfil, start=0):
    gold, silver = [], []
    for i in range(start, start + n_stuffing + n_exfil + 5):
        eid = f"{batch}-{i}"
        if i - start < n_stuffing:
            kind, tops = (
                "login",
                ["failed_logins_10m", "failed_login_ips_10m", "ip_novelty"],
            )
            contrib = {
                "failed_logins_10m": 0.2,
                "failed_login_ips_10m": 0.1,
                "ip_novelty": 0.05,
            }
            sev, status, flagged = 99.95, "CRITICAL", True
        elif i - start < n_stuffing + n_exfil:
            kind, tops = "file_download", ["bytes_log", "bytes_vs_user_mean"]
            contrib = {"bytes_log": 0.3, "bytes_vs_user_mean": 0.2}
            sev, status, flagged = 99.4, "WARNING", True
        else:
            kind, tops, contrib, sev, status, flagged = (
                "page_view",
                None,
                None,
                40.0,
                "NORMAL",
                False,
            )
        gold.append(
            (
                eid,
                f"u{i:04d}",
                kind,
                T0 + timedelta(seconds=i),
                "US",
                "desktop",
                batch,
                0.7 if flagged else 0.4,
                sev,
                flagged,
                status,
                "m",
                "1",
                contrib,
                tops,
                "forests",
            )
        )
        silver.append(
            (
                eid,
                T0 + timedelta(seconds=i),
                f"sess-{i}",
                f"23.9.8.{i % 250}",
                "US",
                "desktop",
                f"bot/1.0 (contact ops{i}@corp.example)",
                False,
                None,
                None,
                None,
                50,
                batch,
            )
        )
    return gold, silver


def delta_rows(lakehouse, name: str) -> list[dict]:
    """A table's rows read with the deltalake package (an independent Delta reader)."""
    import deltalake

    return deltalake.DeltaTable(lakehouse.path(name)).to_pyarrow_table().to_pylist()


def assert_ledger_complete(
    lakehouse, topic: str, topic_id: str, spans: dict[int, tuple[int, int]]
) -> dict[str, int]:
    """The ledger invariant for one topic id, read with deltalake: per partition the ledger
    covers exactly ``spans[p] = (first, end)`` with no gap or overlap; each row's counts add
    up; the offsets in bronze ∪ quarantine are the landed ones, each once, and none of them is
    also a skip. Returns skipped offsets per reason."""
    ledger = [
        r
        for r in delta_rows(lakehouse, "bronze_offset_ledger")
        if r["topic"] == topic and r["topic_id"] == topic_id
    ]
    stored = [
        (r["partition"], r["offset"])
        for name in ("bronze_events", "bronze_quarantine")
        for r in delta_rows(lakehouse, name)
        if r["topic"] == topic and r["topic_id"] == topic_id
    ]
    assert len(stored) == len(set(stored)), "an offset is stored twice"
    skipped: dict[str, int] = {}
    assert {r["partition"] for r in ledger} == set(spans)
    for partition, (first, end) in spans.items():
        rows = sorted(
            (r for r in ledger if r["partition"] == partition),
            key=lambda r: r["start_offset"],
        )
        assert rows[0]["start_offset"] == first and rows[-1]["end_offset"] == end
        skip_offsets: set[int] = set()
        for a, b in itertools.pairwise(rows):
            assert a["end_offset"] == b["start_offset"], f"hole or overlap at {a}"
        for r in rows:
            size = r["end_offset"] - r["start_offset"]
            assert r["bronze_rows"] + r["quarantine_rows"] + r["skipped"] == size
            for s in r["skips"]:
                skipped[s["reason"]] = (
                    skipped.get(s["reason"], 0) + s["end"] - s["start"]
                )
                skip_offsets |= set(range(s["start"], s["end"]))
        landed = {o for p, o in stored if p == partition}
        assert not landed & skip_offsets, "an offset is both stored and skipped"
        assert landed | skip_offsets == set(range(first, end)), "an offset is nowhere"
        assert len(landed) == sum(r["bronze_rows"] + r["quarantine_rows"] for r in rows)
    return skipped


#: The check property tests: each example is a Spark job on the session's fixture.
CHECK_PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def check_specs(*names: str) -> dict:
    """Stand-ins for a check op's specs: what ``core.checks.result`` reads of one."""

    class Spec:
        def __init__(self, name):
            self.name, self.asset_key, self.blocking = name, None, True

    return {n: Spec(n) for n in names}


def verdicts(results) -> dict:
    return {r.check_name: r.passed for r in results}
