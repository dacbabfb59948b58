"""A second stream from a defs.yaml alone, beside the default one, end to end on the real
broker, Spark, Delta and MLflow: its own tables, contract, model, thresholds, sensor cursor
and lineage, and nothing of either stream in the other's."""

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import mlflow
import yaml
from confluent_kafka import Producer
from dagster import AssetKey, DagsterInstance, build_sensor_context
from dagster.components.testing import create_defs_folder_sandbox

from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.broker import create_topic
from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.offsets import fetch_topic_state
from anomaly_assets.silver.features import FEATURE_COLUMNS
from anomaly_assets_tests.helpers import assert_ledger_complete, delta_rows

#: The example stream docs/streams.md points to, so the example is what runs here.
EXAMPLE = Path(__file__).parents[2] / "examples" / "streams" / "payments" / "defs.yaml"
SPEC = yaml.safe_load(EXAMPLE.read_text())["attributes"]
PAYMENT_TYPES = SPEC["contract"]["event_types"]
PAYMENT_FEATURES = SPEC["features"]
NO_LABELS = {"config": {"labels_path": "/nonexistent", "n_estimators": 50}}


def _send(bootstrap: str, topic: str, n: int, seed: int) -> Counter:
    """``n`` generated events to ``topic``; their count by event type."""
    gen = EventGenerator(seed=seed, n_users=40, anomaly_rate=0.02)
    producer, types = Producer({"bootstrap.servers": bootstrap}), Counter()
    for message in itertools.islice(gen, n):
        producer.produce(topic, message.value, message.key, partition=0)
        types[json.loads(message.value)["event_type"]] += 1
    assert producer.flush(30) == 0
    return types


def _tick(defs, sensor: str, kafka, instance, cursor):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"kafka": kafka}
    )
    return defs.get_sensor_def(sensor)(context)


def _run(defs, request, instance, train_op: str):
    ops = dict(request.run_config["ops"])
    if request.job_name.endswith("ingest_and_train_job"):
        ops[train_op] = NO_LABELS
    result = defs.resolve_job_def(request.job_name).execute_in_process(
        run_config={"ops": ops},
        instance=instance,
        tags=request.tags,
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]


def test_a_second_stream_runs_from_yaml_alone_beside_the_first(
    kafka_broker, topic, spark_resource, lakehouse, mlflow_settings
):
    bs = kafka_broker.bootstrap_servers
    payments_topic = f"{topic}-payments"
    for name in (topic, payments_topic):
        create_topic(bs, name, 1)
    _send(bs, topic, 600, seed=41)
    sent = _send(bs, payments_topic, 900, seed=42)
    outside = sum(n for t, n in sent.items() if t not in PAYMENT_TYPES)
    assert outside and sum(sent.values()) - outside

    kafka = KafkaResource(bootstrap_servers=bs, topic=topic, max_batch_events=5000)
    resources = build_resources(
        spark_resource,
        kafka=kafka,
        lakehouse=lakehouse,
        mlflow_settings=mlflow_settings,
    )
    example = EXAMPLE.read_text()
    assert "    topic: payments\n" in example
    yaml = example.replace("    topic: payments\n", f"    topic: {payments_topic}\n")
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "payments"
        folder.mkdir(parents=True)
        (folder / "defs.yaml").write_text(yaml)
        with sandbox.build_all_defs() as declared:
            defs = make_definitions(resources, declared)

    with DagsterInstance.ephemeral() as instance:
        cursors = {}
        for sensor, train_op in [
            ("kafka_offsets_sensor", "anomaly_model"),
            ("payments__kafka_offsets_sensor", "payments__anomaly_model"),
        ]:
            tick = _tick(defs, sensor, kafka, instance, None)
            (request,) = tick.run_requests
            assert request.job_name == sensor.replace(
                "kafka_offsets_sensor", "ingest_and_train_job"
            )
            _run(defs, request, instance, train_op)
            cursors[sensor] = tick.cursor
        # Each sensor has its own cursor: new payments offsets wake only the payments one.
        _send(bs, payments_topic, 200, seed=43)
        idle = _tick(
            defs,
            "kafka_offsets_sensor",
            kafka,
            instance,
            cursors["kafka_offsets_sensor"],
        )
        assert not idle.run_requests
        more = _tick(
            defs,
            "payments__kafka_offsets_sensor",
            kafka,
            instance,
            cursors["payments__kafka_offsets_sensor"],
        )
        (request,) = more.run_requests
        assert request.job_name == "payments__ingest_job"
        assert request.tags["anomaly_assets/topic"] == payments_topic
        _run(defs, request, instance, "payments__anomaly_model")

    # Separate tables, each stream's offsets all accounted for in its own ledger.
    payments = lakehouse.under("payments")
    default_bronze = delta_rows(lakehouse, "bronze_events")
    assert {r["topic"] for r in default_bronze} == {topic} and len(
        default_bronze
    ) == 600
    for lake, name, n in [(lakehouse, topic, 600), (payments, payments_topic, 1100)]:
        topic_id = fetch_topic_state({"bootstrap.servers": bs}, name, 5).topic_id
        assert assert_ledger_complete(lake, name, topic_id, {0: (0, n)}) == {}
    # The stream's contract: its event types land, the others are quarantined as such.
    quarantined = delta_rows(payments, "bronze_quarantine")
    kept = delta_rows(payments, "bronze_events")
    assert {r["event_type"] for r in kept} <= set(PAYMENT_TYPES)
    outside_now = sum(
        1 for r in quarantined if r["reason"] == "event_type_not_in_stream"
    )
    assert outside_now >= outside and len(kept) + len(quarantined) == 1100

    # Its own model: registered under its name, trained on its features and threshold.
    client = mlflow.MlflowClient(mlflow_settings.tracking_uri)
    names = {m.name for m in client.search_registered_models()}
    assert names == {
        "anomaly_assets_isolation_forest",
        "payments__anomaly_assets_isolation_forest",
    }
    champion = client.get_model_version_by_alias(
        "payments__anomaly_assets_isolation_forest", "champion"
    )
    info = mlflow.models.get_model_info(
        f"models:/payments__anomaly_assets_isolation_forest/{champion.version}"
    )
    assert info.metadata["features"] == PAYMENT_FEATURES
    assert (
        info.metadata["threshold_percentile"] == SPEC["model"]["threshold_percentile"]
    )

    # Its thresholds: scored by its model, CRITICAL from its own cut-off.
    gold = delta_rows(payments, "gold_anomaly_predictions")
    assert {r["event_id"] for r in gold} == {r["event_id"] for r in kept}
    assert {r["model_name"] for r in gold} == {
        "payments__anomaly_assets_isolation_forest"
    }
    flagged = [r for r in gold if r["is_anomaly"]]
    assert flagged and all(math.isfinite(r["anomaly_score"]) for r in gold)
    for r in flagged:
        critical = r["severity_percentile"] >= SPEC["severity"]["critical_at"]
        assert (r["status"] == "CRITICAL") == critical, r
        assert set(r["top_features"]) <= set(PAYMENT_FEATURES)
    default_gold = delta_rows(lakehouse, "gold_anomaly_predictions")
    assert {r["event_id"] for r in default_gold} == {
        r["event_id"] for r in default_bronze
    }
    # Explained offline as configured, and evaluated in its own table.
    enriched = delta_rows(payments, "gold_events_enriched")
    assert enriched and {r["provider"] for r in enriched} == {"offline"}
    assert SPEC["enrichment"]["provider"] == "offline"
    evaluated = {
        r["batch_id"] for r in delta_rows(payments, "ai_enrichment_eval_metrics")
    }
    assert evaluated == {r["batch_id"] for r in enriched}
    # In the shared MLflow experiments, each stream's runs say whose they are.
    eval_experiment = client.get_experiment_by_name("ai_enrichment_eval").experiment_id
    tagged = client.search_runs(
        [eval_experiment], "tags.`anomaly_assets.stream` = 'payments'"
    )
    assert {r.data.tags["batch_id"] for r in tagged} == evaluated
    training = client.get_run(champion.run_id)
    assert training.data.tags["anomaly_assets.stream"] == "payments"

    # Lineage: each stream's graph is its own.
    graph = defs.get_repository_def().asset_graph
    assert graph.get(AssetKey(["payments", "silver_events"])).parent_keys == {
        AssetKey(["payments", "bronze_events"])
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        streams = {k.path[0] == "payments" for k in (key, *node.parent_keys)}
        assert len(streams) == 1, (key, node.parent_keys)
    assert graph.get(AssetKey(["payments", "silver_events"])).group_name == (
        "payments_silver"
    )
    assert set(FEATURE_COLUMNS) >= set(PAYMENT_FEATURES)
