"""The whole pipeline through the real daemon and sensor, with no manual step and one
`dagster dev`, its runs attached to the warm Spark Connect server as ``make dev`` runs
them: a cold start that trains the model; the run process killed right after the
bronze write while the next batch is queued, and the broker stopped as that next run
starts and started again 20 s later; `dagster dev` stopped while events arrive and
started again.
Each converges, each failed run reaches the operations channel (a signed webhook) once, every produced offset lands exactly once in every layer, and the offset
ledger accounts for all of them."""

import os
import re
import signal
import time
from pathlib import Path

from deltalake import DeltaTable

from anomaly_assets.definitions import ASSETS, CHECKS
from anomaly_assets.devtools.broker import create_topic
from anomaly_assets.devtools.dagster_dev import (
    SENSOR_RUNS,
    TERMINAL,
    DagsterDev,
    group_members,
    runs,
    sandbox_env,
    wait_for_batches,
    wait_for_sensor_offsets,
)
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.devtools.receivers import Receivers
from anomaly_assets.ingestion.offsets import fetch_topic_state
from anomaly_assets_tests.helpers import assert_ledger_complete

TOPIC = "daemon-events"
PARTITIONS = 2
STEPS = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  __typename ... on ExecutionStepStartEvent { stepKey }
  ... on ExecutionStepUpForRetryEvent { stepKey } } } } }"""


class Lake:
    """Just enough of LakehouseResource for the ledger helper: table paths."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> str:
        return str(self.root / name)


def delta_versions(lake: Path, table: str) -> int:
    log = lake / table / "_delta_log"
    return len(list(log.glob("*.json"))) if log.exists() else 0


ENGINE = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  __typename ... on EngineEvent { message } } } } }"""


def run_worker(dev: DagsterDev) -> tuple[str, int] | None:
    """The id of the sensor's run in progress and the pid of the process executing it,
    from the run's own "Started process for run (pid: N)" event."""
    for run in runs(dev, SENSOR_RUNS):
        if run["status"] != "STARTED":
            continue
        events = dev.gql(ENGINE, {"id": run["runId"]})["logsForRun"]["events"]
        for e in events:
            found = re.match(
                r"Started process for run \(pid: (\d+)\)", e.get("message") or ""
            )
            if found:
                return run["runId"], int(found.group(1))
    return None


def started_steps(dev: DagsterDev, run_id: str) -> list[tuple[str, str]]:
    events = dev.gql(STEPS, {"id": run_id})["logsForRun"]["events"]
    return [(e["__typename"], e.get("stepKey")) for e in events if e.get("stepKey")]


def assert_warnings_wait_for_the_assets(dev: DagsterDev, run_id: str) -> None:
    """Non-blocking checks start only after the last asset step on the way to the rows
    started, so a warning never delays the next table's rows; blocking checks run as soon
    as ready."""
    order = [k for t, k in started_steps(dev, run_id) if t == "ExecutionStepStartEvent"]
    every = {c.node_def.name for c in CHECKS}
    # assets off the way to the rows (gold_user_incidents) wait like the warnings
    late = {a.op.name for a in ASSETS if "dagster/priority" in a.op.tags}
    deferred = {
        c.node_def.name for c in CHECKS if not any(s.blocking for s in c.check_specs)
    }
    assets = [k for k in order if k not in every | late]
    checks = [k for k in order if k in deferred]
    assert assets and checks and len(order) > len(assets) + len(checks)
    assert max(order.index(k) for k in assets) < min(order.index(k) for k in checks)


def table(lake: Path, name: str, columns: list[str]) -> list[dict]:
    return DeltaTable(str(lake / name)).to_pyarrow_table(columns=columns).to_pylist()


def assert_lakehouse_accounts_for(lake: Path, ends: dict[int, int]) -> None:
    """Every produced offset once in bronze or quarantine, carried through every layer; each
    anomaly in exactly one incident."""
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
    incidents = table(lake, "gold_user_incidents", ["event_ids"])
    in_incidents = [e for r in incidents for e in r["event_ids"]]
    assert sorted(in_incidents) == sorted(anomalies), "each anomaly in one incident"
    enriched = table(lake, "gold_events_enriched", ["event_id", "batch_id"])
    assert anomalies and len(enriched) == len(anomalies)
    assert {r["event_id"] for r in enriched} == anomalies
    evals = table(lake, "ai_enrichment_eval_metrics", ["batch_id", "is_comparison"])
    assert sorted(r["batch_id"] for r in evals) == sorted(
        {r["batch_id"] for r in enriched}
    )


def kill_run_after_bronze_commit(dev: DagsterDev, lake: Path, produce_more) -> str:
    """Produce two batches' worth and SIGKILL the run process right after bronze_events'
    commit of the first, while the second is queued behind it; returns the killed run's
    id."""
    before = delta_versions(lake, "bronze_events")
    produce_more(2000)
    deadline = time.monotonic() + 300
    while delta_versions(lake, "bronze_events") == before:
        assert time.monotonic() < deadline, dev.log_tail()
        time.sleep(0.05)
    victim = run_worker(dev)
    assert victim is not None, "no run process found"
    run_id, pid = victim
    os.kill(pid, signal.SIGKILL)
    return run_id


#: Longer than the bronze step's first retry delay (15 s, KAFKA_RETRY), the sensor's
#: retry base delay (5 s here) and its ticks (5 s): the step retries and the ticks
#: meet a broker that is down.
OUTAGE_S = 20


def stop_broker_as_the_next_run_starts(dev: DagsterDev, broker, killed: str) -> str:
    """Once the killed run shows as failed, stop the broker as soon as another sensor run
    is waiting or starting (the batch queued behind the killed one: it leaves the queue
    within a second of the failure, before its bronze step reads), start it again
    OUTAGE_S later; returns that run's id."""
    deadline = time.monotonic() + 300
    while True:
        found = runs(dev, SENSOR_RUNS)
        ended = any(r["runId"] == killed and r["status"] in TERMINAL for r in found)
        waiting = [
            r for r in found if r["runId"] != killed and r["status"] not in TERMINAL
        ]
        if ended and waiting:
            break
        assert time.monotonic() < deadline, dev.log_tail()
        time.sleep(0.2)
    broker.stop()
    time.sleep(OUTAGE_S)
    broker.start()
    return waiting[-1]["runId"]


def operations_alerts(receivers: Receivers, run_ids: set[str]) -> list[dict]:
    """The operations alerts received for ``run_ids``, once they all arrived (the failure
    sensor ticks every 15 s, then the alert job's run starts)."""
    deadline = time.monotonic() + 120
    while True:
        bodies = [r["body"] for r in receivers.webhook_requests]
        about = {dict(map(tuple, b["details"]))["Run"] for b in bodies}
        if about >= run_ids:
            return bodies
        assert time.monotonic() < deadline, f"alerts for {about} of {run_ids}"
        time.sleep(1)


def test_sensor_alone_converges_through_kill_outage_and_restart(
    kafka_broker, spark_connect_server, tmp_path
):
    bootstrap = kafka_broker.bootstrap_servers
    lake = tmp_path / "lake"
    receivers = Receivers(tmp_path / "receivers").start()
    alerts_file = tmp_path / "alerts.yaml"
    alerts_file.write_text(
        f"channels:\n  ops: {{type: webhook, url: '{receivers.base}/hook', "
        "secret_env: OPS_HOOK_SECRET}\noperations: {channels: [ops]}\n"
    )
    # As `make dev` runs it: every run attaches to the warm Spark Connect server.
    env = sandbox_env(
        tmp_path,
        bootstrap,
        TOPIC,
        max_batch_events="1000",
        retry_base_delay_s="5",
        spark_remote=spark_connect_server.url,
        alerts_file=str(alerts_file),
    )
    env["OPS_HOOK_SECRET"] = receivers.webhook_secret
    # No labels: with them, the quality gate may refuse a model trained on 1,000 events
    # and the sensor would retrain on a later batch (by design, but not this test's point).
    generator = EventGenerator(
        seed=41, n_users=80, anomaly_rate=0.03, malformed_rate=0.01
    )
    create_topic(bootstrap, TOPIC, PARTITIONS)
    dev = DagsterDev(tmp_path / "dagster_home", env, tmp_path / "dagster_dev.log")
    produced = 0

    def produce_more(n: int) -> None:
        nonlocal produced
        report = produce(bootstrap, TOPIC, n, generator, None, PARTITIONS)
        assert report.delivered == n
        produced += n

    try:
        dev.start()
        # 1. a cold start: the first batch also trains the model, then everything scores
        produce_more(1000)
        first = wait_for_sensor_offsets(dev, produced)
        assert [r["jobName"] for r in first] == ["ingest_and_train_job"]
        assert_warnings_wait_for_the_assets(dev, first[0]["runId"])
        assert_lakehouse_accounts_for(lake, end_offsets(bootstrap))

        # 2. the run process killed after its bronze commit; the batch is requested
        # again. 3. the broker stops as the batch queued behind it starts, back 20 s later
        killed = kill_run_after_bronze_commit(dev, lake, produce_more)
        outage_run = stop_broker_as_the_next_run_starts(dev, kafka_broker, killed)
        latest, every = wait_for_batches(dev, produced)
        failed = [r for r in every if r["status"] == "FAILURE"]
        assert failed, "the killed run must show as failed"
        retried = {r["tags"]["anomaly_assets/batch_id"] for r in failed}
        assert all(
            r["tags"]["anomaly_assets/attempt"] != "1"
            for r in latest
            if r["tags"]["anomaly_assets/batch_id"] in retried
        ), "the killed batch succeeded through a retry"
        later = [r for r in every if r["runId"] != first[0]["runId"]]
        assert {r["jobName"] for r in later} == {"ingest_job"}, "no retraining"
        assert_lakehouse_accounts_for(lake, end_offsets(bootstrap))
        faults = started_steps(dev, outage_run)
        assert ("ExecutionStepUpForRetryEvent", "bronze") in faults or any(
            r["runId"] == outage_run and r["status"] == "FAILURE" for r in every
        ), "the outage was felt: a step retry or a failed, retried run"
        alerts = operations_alerts(receivers, {r["runId"] for r in failed})
        assert len(alerts) == len(failed), "one operations alert per failed run"
        assert all(a["title"].startswith("Run failed: ingest") for a in alerts)

        # 4. stop everything, produce while it is down, start again on the same instance
        pgid = dev.proc.pid
        dev.stop()
        assert not group_members(pgid)
        produce_more(1000)
        dev.start()
        latest, _ = wait_for_batches(dev, produced)
        assert sum(int(r["tags"]["anomaly_assets/offsets"]) for r in latest) == produced
    finally:
        dev.stop()
        receivers.stop()

    ends = end_offsets(bootstrap)
    assert sum(ends.values()) == produced
    assert_lakehouse_accounts_for(lake, ends)
    state = fetch_topic_state({"bootstrap.servers": bootstrap}, TOPIC, 10)
    skipped = assert_ledger_complete(
        Lake(lake), TOPIC, state.topic_id, {p: (0, end) for p, end in ends.items()}
    )
    assert skipped == {}


def end_offsets(bootstrap: str) -> dict[int, int]:
    from anomaly_assets.ingestion.offsets import fetch_offsets

    starts, ends = fetch_offsets({"bootstrap.servers": bootstrap}, TOPIC, 10)
    assert set(starts.values()) == {0}
    return ends
