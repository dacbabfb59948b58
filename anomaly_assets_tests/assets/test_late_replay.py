"""The same stream, shuffled within the allowed lateness, replayed through the sensor's jobs
in 100-event batches and in one batch: identical silver features and gold scores.

Arrival order is event time plus a random delay of up to half the allowed lateness, so many
events arrive after later events of the same user, and no event arrives more than the
allowed lateness behind the newest one: silver must correct the rows after each of them.
"""

import itertools
import json
import random
from datetime import datetime

from dagster import AssetKey, DagsterInstance, build_sensor_context

from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.broker import create_topic
from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.lib.features import FEATURE_COLUMNS
from anomaly_assets.resources import KafkaResource
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.sensors import kafka_offsets_sensor
from anomaly_assets_tests.assets.test_hostile_batch import TRAIN, _send
from anomaly_assets_tests.helpers import delta_rows

LATENESS_S = 3600
TO_GOLD = [
    AssetKey(k)
    for k in (
        "bronze_events",
        "bronze_quarantine",
        "bronze_offset_ledger",
        "silver_events",
        "silver_user_profile",
        "gold_anomaly_predictions",
        "gold_batch_drift",
        "gold_model_monitoring",
    )
]


def _shuffled_stream(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    gen = EventGenerator(seed=seed, n_users=25, anomaly_rate=0.03)
    messages = [(m.key, m.value) for m in itertools.islice(gen, n)]
    rng = random.Random(seed)

    def arrival(message):
        ts = datetime.fromisoformat(json.loads(message[1])["event_ts"]).timestamp()
        return ts + rng.uniform(0, LATENESS_S / 2)

    keyed = [(arrival(m), i, m) for i, m in enumerate(messages)]
    return [m for _, _, m in sorted(keyed)]


def _replay(instance, bootstrap, topic, stream, resources, batch):
    """Every message of ``stream`` through the sensor's jobs (bronze → gold), ``batch``
    offsets a run; returns the number of runs."""
    create_topic(bootstrap, topic, 1)
    _send(bootstrap, topic, stream)
    kafka = KafkaResource(
        bootstrap_servers=bootstrap, topic=topic, max_batch_events=batch
    )
    defs = make_definitions(build_resources(kafka=kafka, **resources))
    cursor, runs = None, 0
    while runs * batch < len(stream):
        tick = kafka_offsets_sensor(
            build_sensor_context(
                instance=instance, cursor=cursor, resources={"kafka": kafka}
            )
        )
        cursor = tick.cursor
        for request in tick.run_requests:  # in offset order, as the daemon submits them
            # Only the very first run trains (cold start); later ones use that model.
            trains = request.job_name == "ingest_and_train_job"
            ops = {**request.run_config["ops"], **(TRAIN if trains else {})}
            run = defs.resolve_job_def(request.job_name).execute_in_process(
                run_config={"ops": ops},
                instance=instance,
                tags=request.tags,
                raise_on_error=False,
                asset_selection=[*TO_GOLD, *([AssetKey("anomaly_model")] * trains)],
            )
            assert run.success, [e.message for e in run.all_events if e.is_failure]
            runs += 1
    return runs


def _by_event(lakehouse, table, columns):
    return {
        r["event_id"]: tuple(r[c] for c in columns)
        for r in delta_rows(lakehouse, table)
    }


def test_replay_in_small_and_large_batches_gives_identical_results(
    kafka_broker, topic, spark_resource, spark, tmp_path, mlflow_settings
):
    stream = _shuffled_stream(400, seed=5)
    event_ts = [json.loads(v)["event_ts"] for _, v in stream]
    out_of_order = sum(b < a for a, b in itertools.pairwise(event_ts))
    assert out_of_order > 60  # the shuffle really reorders

    lakes = {}
    with DagsterInstance.ephemeral() as instance:
        for batch in (100_000, 100):  # the large one first: it trains the champion
            lake = LakehouseResource(
                root=str(tmp_path / f"lake{batch}"), spark=spark_resource
            )
            resources = {
                "spark": spark_resource,
                "lakehouse": lake,
                "mlflow_settings": mlflow_settings,
            }
            runs = _replay(
                instance,
                kafka_broker.bootstrap_servers,
                f"{topic}-{batch}",
                stream,
                resources,
                batch,
            )
            assert runs == -(-len(stream) // batch)
            lakes[batch] = lake

    columns = (*FEATURE_COLUMNS, "late")
    small = _by_event(lakes[100], "silver_events", columns)
    large = _by_event(lakes[100_000], "silver_events", columns)
    assert len(small) == len(large) == len(stream)
    assert small == large
    assert not any(row[-1] for row in small.values())  # nothing was later than allowed

    scores = ("anomaly_score", "severity_percentile", "is_anomaly", "status")
    assert _by_event(lakes[100], "gold_anomaly_predictions", scores) == _by_event(
        lakes[100_000], "gold_anomaly_predictions", scores
    )
    # The small batches corrected earlier rows: some silver rows were rewritten.
    history = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(lakes[100].path("silver_events"))
    )
    assert history.filter("_change_type = 'update_postimage'").count() > 0
