"""The Kafka offsets sensor against a real broker, through build_sensor_context."""

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    MetadataValue,
    RunRequest,
    SkipReason,
    build_sensor_context,
)

from anomaly_assets.devtools.broker import create_topic, free_port
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.ledger import LANDED_THROUGH
from anomaly_assets.ingestion.offsets import fetch_topic_state
from anomaly_assets.ingestion.sensor import kafka_offsets_sensor
from anomaly_assets.ingestion.sensor_state import SensorCursor


def _produce(bootstrap, topic, n, partition=None):
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        kwargs = {} if partition is None else {"partition": partition}
        p.produce(topic, f'{{"i": {i}}}'.encode(), f"k{i}".encode(), **kwargs)
    assert p.flush(30) == 0


def _tick(kafka, cursor=None, instance=None):
    if instance is None:
        with DagsterInstance.ephemeral() as ephemeral:
            return _tick(kafka, cursor, ephemeral)
    ctx = build_sensor_context(
        instance=instance, cursor=cursor, resources={"kafka": kafka}
    )
    return kafka_offsets_sensor(ctx)


def offsets(cursor: str) -> dict[int, int]:
    return SensorCursor.decode(cursor, "").offsets


def _ranges(req: RunRequest):
    cfg = req.run_config["ops"]["bronze"]["config"]
    return cfg["batch_id"], [
        (r["partition"], r["start"], r["end"]) for r in cfg["ranges"]
    ]


def test_new_offsets_become_bounded_runs_with_stable_keys(kafka_broker, topic):
    bs = kafka_broker.bootstrap_servers
    create_topic(bs, topic, 2)
    _produce(bs, topic, 60, partition=0)
    _produce(bs, topic, 25, partition=1)
    kafka = KafkaResource(bootstrap_servers=bs, topic=topic, max_batch_events=30)

    first = _tick(kafka)
    reqs = first.run_requests
    # each batch takes from both partitions in proportion to their backlogs (60 : 25)
    assert [_ranges(r)[1] for r in reqs] == [
        [(0, 0, 21), (1, 0, 9)],
        [(0, 21, 42), (1, 9, 18)],
        [(0, 42, 60), (1, 18, 25)],
    ]
    assert offsets(first.cursor) == {0: 60, 1: 25}
    assert all(r.tags["anomaly_assets/batch_id"] == _ranges(r)[0] for r in reqs)
    # the same cursor gives the same run keys and batch ids (Dagster dedupes on run_key)
    again = _tick(kafka)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in reqs]
    assert [_ranges(r) for r in again.run_requests] == [_ranges(r) for r in reqs]

    # nothing new: a skip, and the cursor stays
    idle = _tick(kafka, first.cursor)
    assert isinstance(idle, SkipReason) or not idle.run_requests

    # new offsets and a new partition are picked up from where the cursor stands
    _produce(bs, topic, 5, partition=1)
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(10)
    _produce(bs, topic, 4, partition=2)
    nxt = _tick(kafka, first.cursor)
    assert [_ranges(r)[1] for r in nxt.run_requests] == [[(1, 25, 30), (2, 0, 4)]]
    assert offsets(nxt.cursor) == {0: 60, 1: 30, 2: 4}


def test_a_new_cursor_starts_where_the_ledger_has_landed(kafka_broker, topic):
    bs = kafka_broker.bootstrap_servers
    create_topic(bs, topic, 2)
    _produce(bs, topic, 40, partition=0)
    _produce(bs, topic, 10, partition=1)
    kafka = KafkaResource(bootstrap_servers=bs, topic=topic)
    topic_id = fetch_topic_state({"bootstrap.servers": bs}, topic, 10).topic_id
    with DagsterInstance.ephemeral() as instance:

        def landed(tid, offsets):
            instance.report_runless_asset_event(
                AssetMaterialization(
                    "bronze_offset_ledger",
                    metadata={
                        LANDED_THROUGH: MetadataValue.json(
                            {"topic": topic, "topic_id": tid, "offsets": offsets}
                        )
                    },
                )
            )

        # marks of another incarnation of the topic do not count
        landed("an-older-id", {"0": 40, "1": 10})
        assert offsets(_tick(kafka, instance=instance).cursor) == {0: 40, 1: 10}
        assert len(_tick(kafka, instance=instance).run_requests) == 1
        # a manual run (make demo) landed p0 through 30 and all of p1: only the rest
        landed(topic_id, {"0": 30, "1": 10})
        tick = _tick(kafka, instance=instance)
        assert [_ranges(r)[1] for r in tick.run_requests] == [[(0, 30, 40)]]
        # an existing cursor is the sensor's own: the ledger does not move it
        assert _ranges(_tick(kafka, '{"0": 5}', instance).run_requests[0])[1][0] == (
            0,
            5,
            40,
        )


def test_runs_per_tick_are_capped(kafka_broker, topic):
    bs = kafka_broker.bootstrap_servers
    create_topic(bs, topic, 1)
    _produce(bs, topic, 50)
    kafka = KafkaResource(
        bootstrap_servers=bs, topic=topic, max_batch_events=10, max_runs_per_tick=2
    )
    r1 = _tick(kafka)
    assert len(r1.run_requests) == 2 and offsets(r1.cursor) == {0: 20}
    r2 = _tick(kafka, r1.cursor)
    assert _ranges(r2.run_requests[0])[1] == [(0, 20, 30)]


def test_unreachable_broker_skips_fast_without_touching_the_cursor():
    kafka = KafkaResource(
        bootstrap_servers=f"127.0.0.1:{free_port()}", topic="x", request_timeout_s=2.0
    )
    cursor = SensorCursor("x", "", {0: 42}).encode()
    t0 = time.monotonic()
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(
            instance=instance, cursor=cursor, resources={"kafka": kafka}
        )
        result = kafka_offsets_sensor(ctx)
        assert ctx.cursor == cursor
    assert time.monotonic() - t0 < 5
    assert isinstance(result, SkipReason)
    assert (
        "Kafka unavailable" in result.skip_message
        and "cursor unchanged" in result.skip_message
    )


def test_missing_topic_is_a_skip(kafka_broker):
    kafka = KafkaResource(
        bootstrap_servers=kafka_broker.bootstrap_servers, topic="nope"
    )
    result = _tick(kafka)
    assert isinstance(result, SkipReason) and "nope" in result.skip_message


def test_cold_start_trains_the_model_once_with_the_first_batch(kafka_broker, topic):
    bs = kafka_broker.bootstrap_servers
    create_topic(bs, topic, 1)
    _produce(bs, topic, 30)
    kafka = KafkaResource(bootstrap_servers=bs, topic=topic, max_batch_events=10)
    with DagsterInstance.ephemeral() as instance:
        jobs = [r.job_name for r in _tick(kafka, instance=instance).run_requests]
        assert jobs == ["ingest_and_train_job", "ingest_job", "ingest_job"]

        # a training run already under way: no second one
        instance.add_run(
            DagsterRun(job_name="ingest_and_train_job", status=DagsterRunStatus.STARTED)
        )
        jobs = [r.job_name for r in _tick(kafka, instance=instance).run_requests]
        assert jobs == ["ingest_job"] * 3

    with DagsterInstance.ephemeral() as instance:
        # a failed training run does not count: the next tick tries again
        instance.add_run(
            DagsterRun(job_name="ingest_and_train_job", status=DagsterRunStatus.FAILURE)
        )
        first = _tick(kafka, instance=instance).run_requests[0]
        assert first.job_name == "ingest_and_train_job"
        # a model whose quality gate failed is no champion: train again
        instance.report_runless_asset_event(
            AssetMaterialization("anomaly_model", metadata={"champion_version": "none"})
        )
        first = _tick(kafka, instance=instance).run_requests[0]
        assert first.job_name == "ingest_and_train_job"
        # once there is a champion, batches only ingest and score
        instance.report_runless_asset_event(
            AssetMaterialization("anomaly_model", metadata={"champion_version": "1"})
        )
        jobs = [r.job_name for r in _tick(kafka, instance=instance).run_requests]
        assert jobs == ["ingest_job"] * 3


def test_a_new_topic_name_starts_from_its_log_start(kafka_broker, topic):
    bs = kafka_broker.bootstrap_servers
    create_topic(bs, topic, 1)
    _produce(bs, topic, 5)
    old = SensorCursor("old-topic", "some-id", {0: 900}, {}).encode()
    kafka = KafkaResource(bootstrap_servers=bs, topic=topic)
    result = _tick(kafka, old)
    assert [_ranges(r)[1] for r in result.run_requests] == [[(0, 0, 5)]]
    (observation,) = result.asset_events
    assert "topic changed from 'old-topic'" in observation.description
    cursor = SensorCursor.decode(result.cursor, topic)
    assert (cursor.topic, cursor.offsets) == (topic, {0: 5}) and cursor.topic_id
