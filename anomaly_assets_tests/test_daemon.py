"""End to end through the daemon: the sensor alone carries produced events from Kafka to
ai_enrichment_eval_metrics, exactly once, across productions and a restart of `dagster dev`."""

from pathlib import Path

from deltalake import DeltaTable

from anomaly_assets.devtools.broker import create_topic
from anomaly_assets.devtools.dagster_dev import (
    DagsterDev,
    group_members,
    sandbox_env,
    wait_for_sensor_offsets,
)
from anomaly_assets.devtools.generator import EventGenerator, produce

TOPIC = "daemon-events"


def table(lake: Path, name: str, columns: list[str]) -> list[dict]:
    return DeltaTable(str(lake / name)).to_pyarrow_table(columns=columns).to_pylist()


def assert_lakehouse_accounts_for(lake: Path, ends: dict[int, int]) -> None:
    """Every produced offset once in bronze or quarantine, carried through every layer."""
    bronze = table(lake, "bronze_events", ["partition", "offset", "event_id"])
    quarantine = table(lake, "bronze_quarantine", ["partition", "offset"])
    offsets = [(r["partition"], r["offset"]) for r in bronze + quarantine]
    assert len(offsets) == len(set(offsets)), "an offset landed twice"
    assert set(offsets) == {(p, o) for p, end in ends.items() for o in range(end)}
    assert quarantine, "the generator's malformed messages must reach quarantine"

    silver = {r["event_id"] for r in table(lake, "silver_events", ["event_id"])}
    assert silver == {r["event_id"] for r in bronze}
    gold = table(
        lake, "gold_anomaly_predictions", ["event_id", "is_anomaly", "batch_id"]
    )
    assert len(gold) == len(silver) and {r["event_id"] for r in gold} == silver
    anomalies = {r["event_id"] for r in gold if r["is_anomaly"]}
    enriched = table(lake, "gold_events_enriched", ["event_id", "batch_id"])
    assert anomalies and len(enriched) == len(anomalies)
    assert {r["event_id"] for r in enriched} == anomalies
    evals = table(lake, "ai_enrichment_eval_metrics", ["batch_id", "is_comparison"])
    assert sorted(r["batch_id"] for r in evals) == sorted(
        {r["batch_id"] for r in enriched}
    )


def test_sensor_runs_every_batch_exactly_once_across_a_restart(kafka_broker, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    lake = tmp_path / "lake"
    env = sandbox_env(tmp_path, bootstrap, TOPIC)
    labels = tmp_path / "local" / "labels.csv"
    generator = EventGenerator(
        seed=31, n_users=120, anomaly_rate=0.03, malformed_rate=0.01
    )
    create_topic(bootstrap, TOPIC, 2)
    dev = DagsterDev(tmp_path / "dagster_home", env, tmp_path / "dagster_dev.log")
    produced = 0

    def produce_more(n: int) -> None:
        nonlocal produced
        report = produce(bootstrap, TOPIC, n, generator, labels, partitions=2)
        assert report.delivered == n
        produced += n

    try:
        dev.start()
        # 1. a cold start: the first batch also trains the model, then everything scores
        produce_more(3000)
        first = wait_for_sensor_offsets(dev, produced)
        assert [r["jobName"] for r in first] == ["ingest_and_train_job"]
        ends = end_offsets(bootstrap)
        assert_lakehouse_accounts_for(lake, ends)

        # 2. more events: only the new offsets, in a run that does not retrain
        produce_more(2000)
        second = wait_for_sensor_offsets(dev, produced)
        new = [r for r in second if r["runId"] not in {f["runId"] for f in first}]
        assert new and {r["jobName"] for r in new} == {"ingest_job"}
        assert sum(int(r["tags"]["anomaly_assets/offsets"]) for r in new) == 2000
        assert_lakehouse_accounts_for(lake, end_offsets(bootstrap))

        # 3. stop everything, produce while it is down, start again on the same instance
        pgid = dev.proc.pid
        dev.stop()
        assert not group_members(pgid)
        produce_more(1500)
        dev.start()
        third = wait_for_sensor_offsets(dev, produced)
        assert all(r["status"] == "SUCCESS" for r in third)
        assert sum(int(r["tags"]["anomaly_assets/offsets"]) for r in third) == produced
        assert len({r["tags"]["anomaly_assets/batch_id"] for r in third}) == len(third)
        assert_lakehouse_accounts_for(lake, end_offsets(bootstrap))
    finally:
        dev.stop()


def end_offsets(bootstrap: str) -> dict[int, int]:
    from anomaly_assets.lib.offsets import fetch_offsets

    starts, ends = fetch_offsets({"bootstrap.servers": bootstrap}, TOPIC, 10)
    assert set(starts.values()) == {0}
    return ends
