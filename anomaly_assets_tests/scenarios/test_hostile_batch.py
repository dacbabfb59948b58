"""A hostile batch then a clean one, through the sensor's jobs end to end (bronze → gold →
enrichment → evaluation): both runs succeed, every hostile message is quarantined with the
classifier's reason, the clean events reach gold, and no feature or score is NaN. The clean
run's Spark actions stay under a pinned bound, and each step records its own."""

import base64
import itertools
import math

from confluent_kafka import Producer
from dagster import DagsterInstance, RunsFilter, build_sensor_context

from anomaly_assets.core import spark_actions
from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.broker import create_topic
from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.offsets import fetch_topic_state
from anomaly_assets.ingestion.sensor import kafka_offsets_sensor
from anomaly_assets.ingestion.validation import classify
from anomaly_assets.silver.features import FEATURE_COLUMNS
from anomaly_assets_tests.helpers import assert_ledger_complete, delta_rows
from anomaly_assets_tests.ingestion.test_validation import HOSTILE, enc

TRAIN = {
    "anomaly_model": {"config": {"n_estimators": 50, "labels_path": "/nonexistent"}}
}


def _send(bootstrap, topic, messages, partition=lambda key: 0):
    """``messages`` (key, value) to ``topic``, each to the partition its key is given."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in messages:
        producer.produce(topic, value, key, partition=partition(key))
    assert producer.flush(30) == 0


def _valid(n, seed):
    """``n`` contract-valid messages (normal and anomalous events) from the generator."""
    gen = EventGenerator(seed=seed, n_users=40, anomaly_rate=0.02, malformed_rate=0.0)
    return [(m.key, m.value) for m in itertools.islice(gen, n)]


#: Most Spark actions a 400-event run through ingest_job may take, every asset and check
#: (measured 130 when pinned; 142 with gold_user_risk, whose step reads its cursor, the
#: incidents' change feed with the changed users' incidents in one query, writes, and
#: records the write's metadata; alert_outbox without channels takes none).
MAX_SPARK_ACTIONS = 150


def _run(defs, kafka, instance, cursor, extra_ops=None, asset_selection=None):
    result = kafka_offsets_sensor(
        build_sensor_context(
            instance=instance, cursor=cursor, resources={"kafka": kafka}
        )
    )
    (request,) = result.run_requests
    run_config = {"ops": {**request.run_config["ops"], **(extra_ops or {})}}
    run = defs.resolve_job_def(request.job_name).execute_in_process(
        run_config=run_config,
        instance=instance,
        tags=request.tags,
        raise_on_error=False,
        asset_selection=asset_selection,
    )
    assert run.success, [e.message for e in run.all_events if e.is_failure]
    return result.cursor, request


def test_hostile_batch_then_clean_batch(
    kafka_broker, topic, spark_resource, lakehouse, mlflow_settings
):
    bs = kafka_broker.bootstrap_servers
    valid = _valid(1000, seed=31)
    # every class (the skew case needs a Kafka timestamp of the past: it gets its own test)
    hostile = [
        (b"h", v if not isinstance(v, dict) else enc(v))
        for v, _, detail in HOSTILE
        if "after the Kafka timestamp" not in detail
    ]
    mixed = valid[:500] + hostile + valid[500:]
    create_topic(bs, topic, 1)
    _send(bs, topic, mixed)
    kafka = KafkaResource(bootstrap_servers=bs, topic=topic, max_batch_events=5000)
    defs = make_definitions(
        build_resources(
            spark_resource,
            kafka=kafka,
            lakehouse=lakehouse,
            mlflow_settings=mlflow_settings,
        )
    )
    with DagsterInstance.ephemeral() as instance:
        # cold start: the first batch also trains the model
        cursor, first = _run(defs, kafka, instance, None, TRAIN)
        assert first.job_name == "ingest_and_train_job"
        _send(bs, topic, _valid(400, seed=32))
        before = spark_actions.snapshot()
        cursor, second = _run(defs, kafka, instance, cursor)
        assert second.job_name == "ingest_job"
        taken = spark_actions.since(before)
        # A sensor-size run's Spark actions, every asset and check: a regression fails here
        # (see bench/bench_run_cost.py for where they go).
        assert spark_actions.total(taken) <= MAX_SPARK_ACTIONS, (
            spark_actions.total(taken),
            spark_actions.by_site(taken).most_common(),
        )
        (run,) = instance.get_runs(
            RunsFilter(
                tags={"anomaly_assets/batch_id": second.tags["anomaly_assets/batch_id"]}
            )
        )
        steps = spark_actions.by_step(instance, run.run_id)
        assert {"bronze", "silver", "gold", "enrichment"} <= set(steps)

    quarantine = delta_rows(lakehouse, "bronze_quarantine")
    bronze = delta_rows(lakehouse, "bronze_events")
    assert len(quarantine) == len(hostile) and len(bronze) == 1400
    for row in quarantine:
        raw = base64.b64decode(row["raw_value_b64"]) if row["raw_value_b64"] else None
        _, reason, _ = classify(raw, row["kafka_ts"])
        assert row["reason"] == reason, row
    assert {reason for _, reason, _ in HOSTILE} == {r["reason"] for r in quarantine}

    silver = delta_rows(lakehouse, "silver_events")
    assert {r["event_id"] for r in silver} == {r["event_id"] for r in bronze}
    for row in silver:
        assert all(math.isfinite(row[f]) for f in FEATURE_COLUMNS), row
    gold = delta_rows(lakehouse, "gold_anomaly_predictions")
    assert {r["event_id"] for r in gold} == {r["event_id"] for r in silver}
    assert all(math.isfinite(r["anomaly_score"]) for r in gold)
    clean_batch = second.tags["anomaly_assets/batch_id"]
    assert sum(r["batch_id"] == clean_batch for r in gold) == 400

    topic_id = fetch_topic_state({"bootstrap.servers": bs}, topic, 5).topic_id
    n = len(mixed) + 400
    assert assert_ledger_complete(lakehouse, topic, topic_id, {0: (0, n)}) == {}
