"""A backlog on three partitions of unequal size, shuffled within the allowed lateness,
caught up in 100-event batches (the sensor's plan, and runs without config) and in one
batch: identical silver features and gold scores, and no event flagged late.

Each user's events go to one partition, in arrival order: event time plus a random delay of
up to half the allowed lateness, so many events arrive after later events of the same user
and silver must correct the rows after each of them. The stream spans hours, far more than
the lateness, so a batch cut in partition order (all of partition 0 first) would flag the
other partitions' events late.
"""

import itertools
import json
import random
from collections import Counter
from datetime import datetime

from dagster import AssetKey, DagsterInstance, build_sensor_context

from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.broker import create_topic
from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.sensor import kafka_offsets_sensor
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.silver.features import FEATURE_COLUMNS
from anomaly_assets_tests.helpers import delta_rows
from anomaly_assets_tests.scenarios.test_hostile_batch import TRAIN, _send

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


PARTITIONS = 3


def _partition(key: bytes) -> int:
    """Users to partitions, unevenly: half of them to partition 2."""
    return min(int(key[1:]) % 4, PARTITIONS - 1)


def _shuffled_stream(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    gen = EventGenerator(
        seed=seed, n_users=25, anomaly_rate=0.03, sessions_per_minute=0.1
    )
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
    create_topic(bootstrap, topic, PARTITIONS)
    _send(bootstrap, topic, stream, _partition)
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


def _catch_up(instance, bootstrap, topic, stream, resources, batch):
    """Every message of ``stream`` to silver by runs without config, as "Materialize" in
    the UI starts them: each reads at most ``batch`` offsets past what has landed."""
    create_topic(bootstrap, topic, PARTITIONS)
    _send(bootstrap, topic, stream, _partition)
    kafka = KafkaResource(bootstrap_servers=bootstrap, topic=topic)
    defs = make_definitions(build_resources(kafka=kafka, **resources))
    for _ in range(-(-len(stream) // batch)):
        run = defs.resolve_job_def("ingest_job").execute_in_process(
            run_config={"ops": {"bronze": {"config": {"max_events": batch}}}},
            instance=instance,
            raise_on_error=False,
            asset_selection=TO_GOLD[:5],
        )
        assert run.success, [e.message for e in run.all_events if e.is_failure]
    # the sensor, switched on afterwards, starts where these runs landed: nothing to ask
    tick = kafka_offsets_sensor(
        build_sensor_context(instance=instance, resources={"kafka": kafka})
    )
    assert not tick.run_requests


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
    sizes = Counter(_partition(k) for k, _ in stream)
    assert len(set(sizes.values())) == PARTITIONS  # three partitions of unequal size
    first, last = (datetime.fromisoformat(t) for t in (min(event_ts), max(event_ts)))
    assert (last - first).total_seconds() > 3 * LATENESS_S

    lakes = {}
    with DagsterInstance.ephemeral() as instance:
        # the one batch first: it trains the champion; then the sensor's plan; then runs
        # without config (to silver: gold follows from silver's rows and the champion)
        for name, batch in (("one", 100_000), ("sensor", 100), ("manual", 100)):
            lake = LakehouseResource(
                root=str(tmp_path / f"lake-{name}"), spark=spark_resource
            )
            resources = {
                "spark": spark_resource,
                "lakehouse": lake,
                "mlflow_settings": mlflow_settings,
            }
            args = (kafka_broker.bootstrap_servers, f"{topic}-{name}", stream)
            if name == "manual":
                _catch_up(instance, *args, resources, batch)
            else:
                runs = _replay(instance, *args, resources, batch)
                assert runs == -(-len(stream) // batch)
            lakes[name] = lake

    columns = (*FEATURE_COLUMNS, "late")
    whole = _by_event(lakes["one"], "silver_events", columns)
    assert len(whole) == len(stream)
    assert not any(row[-1] for row in whole.values())  # nothing was later than allowed
    for cut in ("sensor", "manual"):
        assert _by_event(lakes[cut], "silver_events", columns) == whole, cut

    scores = ("anomaly_score", "severity_percentile", "is_anomaly", "status")
    assert _by_event(lakes["sensor"], "gold_anomaly_predictions", scores) == _by_event(
        lakes["one"], "gold_anomaly_predictions", scores
    )
    # The small batches corrected earlier rows: some silver rows were rewritten.
    history = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(lakes["sensor"].path("silver_events"))
    )
    assert history.filter("_change_type = 'update_postimage'").count() > 0
