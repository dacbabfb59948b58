"""Kafka → bronze / quarantine → silver with a real broker, Spark and Delta: exactly once."""

import base64
import csv
import json

import deltalake
import pytest
from confluent_kafka import Producer
from dagster import (
    AssetKey,
    DagsterInstance,
    Failure,
    build_sensor_context,
    materialize,
)

from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.ingestion.assets import bronze
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.sensor import kafka_offsets_sensor
from anomaly_assets.io_managers import DeltaIOManager
from anomaly_assets.silver.assets import silver
from anomaly_assets_tests.helpers import consume_all, delta_rows

EXPECTED_REASON = {
    "not_json": "invalid_json",
    "truncated_json": "invalid_json",
    "missing_field": "missing_field",
    "wrong_type": "wrong_type",
    "oversized": "oversized",
    "invalid_utf8": "invalid_utf8",
}


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def table(lakehouse, name) -> list[dict]:
    """A table as rows via deltalake (an independent Delta reader), sorted by offset."""
    rows = deltalake.DeltaTable(lakehouse.path(name)).to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: (r["topic"], r["partition"], r["offset"]))


def sensor_requests(kafka, instance, cursor=None):
    ctx = build_sensor_context(
        instance=instance, cursor=cursor, resources={"kafka": kafka}
    )
    result = kafka_offsets_sensor(ctx)
    return result.run_requests, result.cursor


#: The sensor's job minus gold scoring (which needs a trained model; see test_model_and_gold).
INGESTION = [
    AssetKey("bronze_events"),
    AssetKey("bronze_quarantine"),
    AssetKey("bronze_offset_ledger"),
    AssetKey("silver_events"),
    AssetKey("silver_user_profile"),
]


def run(defs, request, instance):
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=request.run_config,
        instance=instance,
        tags=request.tags,
        asset_selection=INGESTION,
    )
    assert result.success
    return result


def test_every_offset_lands_once_and_reruns_change_nothing(
    kafka_broker, topic, spark_resource, lakehouse, instance, tmp_path
):
    n = 3000
    labels_path = tmp_path / "labels.csv"
    gen = EventGenerator(seed=11, n_users=60, anomaly_rate=0.02, malformed_rate=0.03)
    produce(kafka_broker.bootstrap_servers, topic, n, gen, labels_path, partitions=2)
    kafka = KafkaResource(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=topic,
        max_batch_events=1200,
    )
    defs = make_definitions(
        build_resources(spark_resource, kafka=kafka, lakehouse=lakehouse)
    )

    requests, _ = sensor_requests(kafka, instance)
    assert len(requests) == 3
    results = [run(defs, r, instance) for r in requests]

    sent = consume_all(kafka_broker.bootstrap_servers, topic)
    bronze_rows, quarantine = (
        table(lakehouse, "bronze_events"),
        table(lakehouse, "bronze_quarantine"),
    )
    stored = [(r["partition"], r["offset"]) for r in bronze_rows + quarantine]
    assert len(stored) == len(set(stored)) == n
    assert set(stored) == set(sent)

    with open(labels_path) as f:
        malformed = {
            (int(r["partition"]), int(r["offset"])): r["label"]
            for r in csv.DictReader(f)
            if r["kind"] == "malformed"
        }
    assert {(r["partition"], r["offset"]) for r in quarantine} == set(malformed)
    for r in quarantine:
        assert r["reason"] == EXPECTED_REASON[malformed[(r["partition"], r["offset"])]]
        assert (
            base64.b64decode(r["raw_value_b64"])
            == sent[(r["partition"], r["offset"])][1]
        )
        assert r["reason_detail"]
    for r in bronze_rows:
        assert json.loads(r["raw_value"])["event_id"] == r["event_id"]
        assert r["key"] == r["user_id"]
    # Well-formed generated events are typed in the JVM; only the malformed need Python.
    in_python = sum(
        m.metadata["validated_in_python"].value
        for res in results
        for m in res.asset_materializations_for_node("bronze")
        if m.asset_key.path[-1] == "bronze_events"
    )
    assert in_python == len(malformed)

    silver = table(lakehouse, "silver_events")
    assert len(silver) == len(bronze_rows)
    assert {r["event_id"] for r in silver} == {r["event_id"] for r in bronze_rows}

    checks = [e for res in results for e in res.get_asset_check_evaluations()]
    assert {c.check_name for c in checks} >= {
        "bronze_batch_accounted",
        "offset_ledger_no_holes",
        "quarantine_ratio_check",
        "silver_schema_not_null",
        "silver_unique_event_id",
    }
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    # the holes check reads only ledger rows past what it already proved contiguous
    read = [
        c.metadata["ledger_rows_read"].value
        for c in checks
        if c.check_name == "offset_ledger_no_holes"
    ]
    ledger_rows = len(delta_rows(lakehouse, "bronze_offset_ledger"))
    assert len(read) == 3 and read[-1] < ledger_rows, (read, ledger_rows)

    before = {
        name: table(lakehouse, name)
        for name in ("bronze_events", "bronze_quarantine", "silver_events")
    }
    run(defs, requests[1], instance)  # re-run an old batch
    for name, rows in before.items():
        assert table(lakehouse, name) == rows, f"{name} changed on re-run"


class CrashAfterBronzeIOManager(DeltaIOManager):
    """Writes bronze_events, then dies before bronze_quarantine or silver are written."""

    def handle_output(self, context, obj):
        if context.asset_key.path[-1] == "bronze_quarantine":
            # like a killed process: no in-run retry
            raise Failure("simulated crash after the bronze write", allow_retries=False)
        super().handle_output(context, obj)


def test_crash_after_bronze_write_then_retry_is_still_exactly_once(
    kafka_broker, topic, spark_resource, lakehouse, instance
):
    gen = EventGenerator(seed=5, n_users=20, anomaly_rate=0.0, malformed_rate=0.05)
    produce(kafka_broker.bootstrap_servers, topic, 400, gen, None, partitions=1)
    kafka = KafkaResource(bootstrap_servers=kafka_broker.bootstrap_servers, topic=topic)
    (request,), _ = sensor_requests(kafka, instance)

    crashing = build_resources(spark_resource, kafka=kafka, lakehouse=lakehouse)
    crashing["io_manager"] = CrashAfterBronzeIOManager(lakehouse=lakehouse)
    failed = (
        make_definitions(crashing)
        .resolve_job_def("ingest_job")
        .execute_in_process(
            run_config=request.run_config,
            instance=instance,
            raise_on_error=False,
            asset_selection=INGESTION,
        )
    )
    assert not failed.success
    written = table(lakehouse, "bronze_events")
    assert 0 < len(written) < 400

    defs = make_definitions(
        build_resources(spark_resource, kafka=kafka, lakehouse=lakehouse)
    )
    run(defs, request, instance)
    stored = [
        (r["partition"], r["offset"])
        for r in table(lakehouse, "bronze_events")
        + table(lakehouse, "bronze_quarantine")
    ]
    assert sorted(stored) == [(0, o) for o in range(400)]
    assert len(table(lakehouse, "silver_events")) == len(written)


def test_duplicate_event_in_a_later_batch_stays_out_of_silver_and_manual_catch_up(
    kafka_broker, topic, spark_resource, lakehouse, instance
):
    bs = kafka_broker.bootstrap_servers
    produce(
        bs, topic, 200, EventGenerator(seed=9, n_users=10, anomaly_rate=0.0), None, 1
    )
    kafka = KafkaResource(bootstrap_servers=bs, topic=topic)
    resources = build_resources(spark_resource, kafka=kafka, lakehouse=lakehouse)
    # A manual "Materialize" without config catches up from the ledger's high-water marks.
    assert materialize([bronze, silver], resources=resources, instance=instance).success
    first = table(lakehouse, "silver_events")
    assert len(first) == 200

    key, value = consume_all(bs, topic)[(0, 17)]
    producer = Producer({"bootstrap.servers": bs})
    producer.produce(topic, value, key)  # the same event delivered again, at offset 200
    assert producer.flush(10) == 0
    requests, _ = sensor_requests(kafka, instance, json.dumps({"0": 200}))
    assert len(requests) == 1
    run(make_definitions(resources), requests[0], instance)

    bronze_rows = table(lakehouse, "bronze_events")
    assert len(bronze_rows) == 201
    silver_rows = table(lakehouse, "silver_events")
    assert len(silver_rows) == 200, "the re-delivered event_id stays out of silver"
    dup_id = json.loads(value)["event_id"]
    assert [r["offset"] for r in silver_rows if r["event_id"] == dup_id] == [17]
