"""Kafka as it really is, on the real broker: transactions, compaction, retention, a topic
deleted and created again, a failed batch. Each test ends with the ledger invariant."""

import json
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    build_sensor_context,
    materialize,
)

from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.ingestion.assets import bronze
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.offsets import fetch_topic_state
from anomaly_assets.ingestion.sensor import kafka_offsets_sensor
from anomaly_assets_tests.helpers import assert_ledger_complete, delta_rows

BRONZE = [
    AssetKey("bronze_events"),
    AssetKey("bronze_quarantine"),
    AssetKey("bronze_offset_ledger"),
]


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def events(n: int, seed: int = 3) -> list[tuple[bytes, bytes]]:
    """``n`` valid events as (key, value)."""
    out = []
    for msg in EventGenerator(seed=seed, n_users=15, anomaly_rate=0.0):
        if msg.label is None:
            out.append((msg.key, msg.value))
        if len(out) == n:
            return out
    raise AssertionError("generator ended")


def make_topic(bootstrap: str, topic: str, partitions: int = 1, **config) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1, config=config)])[topic].result(
        30
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the partition has a leader
        try:
            fetch_topic_state({"bootstrap.servers": bootstrap}, topic, 5)
            return
        except Exception:  # noqa: BLE001 - leader election in progress
            time.sleep(0.3)


def send(bootstrap: str, topic: str, messages, partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in messages:
        producer.produce(topic, value, key, partition=partition)
    assert producer.flush(30) == 0


def tick(kafka, instance, cursor=None):
    ctx = build_sensor_context(
        instance=instance, cursor=cursor, resources={"kafka": kafka}
    )
    return kafka_offsets_sensor(ctx)


def run_batches(defs, requests, instance):
    results = []
    for request in requests:
        result = defs.resolve_job_def("ingest_job").execute_in_process(
            run_config=request.run_config,
            instance=instance,
            tags=request.tags,
            asset_selection=BRONZE,
        )
        assert result.success
        results.append(result)
    return results


def checks_of(results) -> dict[str, bool]:
    return {
        c.check_name: c.passed for r in results for c in r.get_asset_check_evaluations()
    }


def setup(kafka_broker, topic, spark_resource, lakehouse, **kafka_options):
    kafka = KafkaResource(
        bootstrap_servers=kafka_broker.bootstrap_servers, topic=topic, **kafka_options
    )
    defs = make_definitions(
        build_resources(spark_resource, kafka=kafka, lakehouse=lakehouse)
    )
    return kafka, defs


def test_transactions_commit_markers_and_an_aborted_one(
    kafka_broker, topic, spark_resource, lakehouse, instance
):
    bs = kafka_broker.bootstrap_servers
    make_topic(bs, topic)
    data = events(60)
    producer = Producer({"bootstrap.servers": bs, "transactional.id": f"tx-{topic}"})
    producer.init_transactions()
    aborted_ids = set()
    for i, commit in enumerate([True, True, False, True]):
        producer.begin_transaction()
        chunk = data[i * 15 : (i + 1) * 15]
        for key, value in chunk:
            producer.produce(topic, value, key, partition=0)
        producer.flush(10)  # librdkafka drops unsent messages on abort
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
            aborted_ids = {json.loads(v)["event_id"] for _, v in chunk}
    kafka, defs = setup(
        kafka_broker, topic, spark_resource, lakehouse, max_batch_events=25
    )
    result = tick(kafka, instance)
    # 4 transactions of 15 records + 4 markers; the sensor plans on the last stable offset
    assert sum(int(r.tags["anomaly_assets/offsets"]) for r in result.run_requests) == 64
    results = run_batches(defs, result.run_requests, instance)
    assert all(checks_of(results).values()), checks_of(results)

    stored = delta_rows(lakehouse, "bronze_events")
    assert len(stored) == 45
    assert not aborted_ids & {r["event_id"] for r in stored}
    topic_id = fetch_topic_state({"bootstrap.servers": bs}, topic, 5).topic_id
    skipped = assert_ledger_complete(lakehouse, topic, topic_id, {0: (0, 64)})
    assert skipped == {"transaction_marker": 4, "aborted_transaction": 15}


def test_compacted_topic_records_compacted_offsets(
    kafka_broker, topic, spark_resource, lakehouse, instance
):
    bs = kafka_broker.bootstrap_servers
    make_topic(
        bs,
        topic,
        **{
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "0",
        },
    )
    data = events(40)
    # 4 keys, 10 versions each: compaction keeps the newest per key
    keyed = [(f"k{i % 4}".encode(), value) for i, (_, value) in enumerate(data)]
    send(bs, topic, keyed)
    deadline = time.monotonic() + 90
    while True:  # roll the segment now and then until the cleaner has run
        send(bs, topic, [(b"roll", data[0][1])])
        time.sleep(1)
        if _visible_offsets(bs, topic) < 30 or time.monotonic() > deadline:
            break
    kafka, defs = setup(kafka_broker, topic, spark_resource, lakehouse)
    state = fetch_topic_state({"bootstrap.servers": bs}, topic, 5)
    visible = _visible_offsets(bs, topic)
    assert visible < state.ends[0] - state.starts[0], "the cleaner removed nothing"
    results = run_batches(defs, tick(kafka, instance).run_requests, instance)
    assert all(checks_of(results).values()), checks_of(results)
    skipped = assert_ledger_complete(
        lakehouse, topic, state.topic_id, {0: (state.starts[0], state.ends[0])}
    )
    stored = len(delta_rows(lakehouse, "bronze_events"))
    assert 0 < stored <= visible  # the cleaner may still run between count and read
    assert skipped == {"compacted": state.ends[0] - state.starts[0] - stored}


def _visible_offsets(bootstrap: str, topic: str) -> int:
    """Records a consumer sees from the log start to the end (compaction leaves gaps)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "count",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, -2)])  # -2: the log start
    n = 0
    while True:
        msg = consumer.poll(10)
        assert msg is not None
        if msg.error() is not None:
            assert msg.error().code() == KafkaError._PARTITION_EOF
            break
        n += 1
    consumer.close()
    return n


def test_retention_deletes_a_backlog_before_it_is_read(
    kafka_broker, topic, spark_resource, lakehouse, instance
):
    bs = kafka_broker.bootstrap_servers
    make_topic(bs, topic, **{"segment.ms": "200"})
    kafka, defs = setup(
        kafka_broker, topic, spark_resource, lakehouse, max_batch_events=50
    )
    send(bs, topic, events(30))
    first = tick(kafka, instance)
    run_batches(defs, first.run_requests, instance)  # offsets 0-29 land
    send(bs, topic, events(120, seed=4))
    planned = tick(kafka, instance, first.cursor)  # the backlog is planned, not run yet
    set_retention(bs, topic, 1000)
    deadline = time.monotonic() + 60
    while fetch_topic_state({"bootstrap.servers": bs}, topic, 5).starts[0] < 100:
        assert time.monotonic() < deadline, "retention did not delete the backlog"
        send(bs, topic, events(1, seed=5))  # a new segment lets the old ones go
        time.sleep(1)
    set_retention(bs, topic, 3_600_000)
    results = run_batches(defs, planned.run_requests, instance)
    state = fetch_topic_state({"bootstrap.servers": bs}, topic, 5)
    later = tick(kafka, instance, planned.cursor)
    results += run_batches(defs, later.run_requests, instance)
    end = fetch_topic_state({"bootstrap.servers": bs}, topic, 5).ends[0]
    skipped = assert_ledger_complete(lakehouse, topic, state.topic_id, {0: (0, end)})
    assert skipped["retention"] >= 100 - 30
    warnings = [
        c
        for r in results
        for c in r.get_asset_check_evaluations()
        if c.check_name == "no_offsets_lost_to_retention"
    ]
    assert any(not c.passed for c in warnings)
    lost = [
        m.metadata["skipped_retention"].value
        for r in results
        for m in r.asset_materializations_for_node("bronze")
        if m.asset_key == AssetKey("bronze_offset_ledger")
    ]
    assert sum(lost) == skipped["retention"]


def set_retention(bootstrap: str, topic: str, ms: int) -> None:
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entry = ConfigEntry(
        "retention.ms", str(ms), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def test_topic_deleted_and_created_again(
    kafka_broker, topic, spark_resource, lakehouse, instance
):
    bs = kafka_broker.bootstrap_servers
    make_topic(bs, topic)
    kafka, defs = setup(kafka_broker, topic, spark_resource, lakehouse)
    send(bs, topic, events(50))
    first = tick(kafka, instance)
    run_batches(defs, first.run_requests, instance)
    old_id = fetch_topic_state({"bootstrap.servers": bs}, topic, 5).topic_id
    send(bs, topic, events(20, seed=6))
    stale = tick(kafka, instance, first.cursor)  # planned on the old topic, never run

    admin = AdminClient({"bootstrap.servers": bs})
    admin.delete_topics([topic])[topic].result(30)
    deadline = time.monotonic() + 30
    while True:
        try:
            make_topic(bs, topic)
            break
        except Exception:  # noqa: BLE001 - deletion still in progress
            assert time.monotonic() < deadline
            time.sleep(0.5)
    send(bs, topic, events(10, seed=7))  # fewer messages than before
    new_id = fetch_topic_state({"bootstrap.servers": bs}, topic, 5).topic_id
    assert new_id != old_id

    recreated = tick(kafka, instance, stale.cursor)
    assert [o.metadata["topic_id"].value for o in recreated.asset_events] == [new_id]
    assert "deleted and created again" in recreated.asset_events[0].description
    run_batches(defs, stale.run_requests + recreated.run_requests, instance)
    send(bs, topic, events(70, seed=8))  # then more than before
    more = tick(kafka, instance, recreated.cursor)
    run_batches(defs, more.run_requests, instance)

    skipped_old = assert_ledger_complete(lakehouse, topic, old_id, {0: (0, 70)})
    assert skipped_old == {"topic_deleted": 20}
    assert assert_ledger_complete(lakehouse, topic, new_id, {0: (0, 80)}) == {}


def test_a_failed_batch_is_requested_again_and_catch_up_fills_holes(
    kafka_broker, topic, spark_resource, lakehouse, instance
):
    bs = kafka_broker.bootstrap_servers
    make_topic(bs, topic)
    kafka, defs = setup(
        kafka_broker,
        topic,
        spark_resource,
        lakehouse,
        max_batch_events=40,
        retry_base_delay_s=0.0,
    )
    send(bs, topic, events(120))
    first = tick(kafka, instance)
    a, b, c = first.run_requests
    # batch a's run failed (say the process was killed); b and c land
    instance.add_run(
        DagsterRun(
            job_name="ingest_job",
            status=DagsterRunStatus.FAILURE,
            tags=a.tags,  # the batch, its attempt, the stream's lane
        )
    )
    results = run_batches(defs, [b, c], instance)
    assert checks_of(results)["bronze_batch_accounted"]
    assert not checks_of(results[-1:])["offset_ledger_no_holes"], "the hole is reported"

    waiting = tick(kafka, instance, first.cursor)  # backoff starts (0 s here)
    assert not waiting.run_requests
    retry = tick(kafka, instance, waiting.cursor)
    (again,) = retry.run_requests
    assert again.tags["anomaly_assets/attempt"] == "2"
    assert again.run_key == f"{a.run_key}|attempt=2"
    assert again.run_config == a.run_config

    # an operator does not wait: Materialize without config fills the hole first
    resources = build_resources(spark_resource, kafka=kafka, lakehouse=lakehouse)
    assert materialize([bronze], resources=resources, instance=instance).success
    topic_id = fetch_topic_state({"bootstrap.servers": bs}, topic, 5).topic_id
    assert assert_ledger_complete(lakehouse, topic, topic_id, {0: (0, 120)}) == {}
    before = len(delta_rows(lakehouse, "bronze_events"))
    results = run_batches(defs, [again], instance)  # the retry then adds nothing
    assert len(delta_rows(lakehouse, "bronze_events")) == before == 120
    assert all(checks_of(results).values()), checks_of(results)
