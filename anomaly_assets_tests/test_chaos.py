"""Faults through the real daemon and sensor, with no manual step: the run process killed
during the bronze write while the next batch succeeds, then the broker stopped during a run
and started again a minute later. Each converges; then the ledger invariant holds."""

import os
import signal
import time
from pathlib import Path

from anomaly_assets.devtools.broker import create_topic
from anomaly_assets.devtools.dagster_dev import (
    SENSOR_RUNS,
    DagsterDev,
    group_members,
    runs,
    sandbox_env,
    wait_for_batches,
)
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.lib.offsets import fetch_topic_state
from anomaly_assets_tests.helpers import assert_ledger_complete

TOPIC = "chaos-events"
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


def run_worker(dev: DagsterDev) -> int | None:
    """The pid of the Python process running a Spark job under ``dagster dev``: the parent
    of the SparkSubmit JVM in dagster dev's process group."""
    for member in group_members(dev.proc.pid):
        pid = int(member.split()[0])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if b"SparkSubmit" in cmdline:
            return int(stat[stat.rindex(")") + 2 :].split()[1])
    return None


def started_steps(dev: DagsterDev, run_id: str) -> list[tuple[str, str]]:
    events = dev.gql(STEPS, {"id": run_id})["logsForRun"]["events"]
    return [(e["__typename"], e.get("stepKey")) for e in events if e.get("stepKey")]


def test_killed_run_and_broker_outage_converge(kafka_broker, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    lake = tmp_path / "lake"
    env = sandbox_env(
        tmp_path, bootstrap, TOPIC, max_batch_events="1000", retry_base_delay_s="5"
    )
    generator = EventGenerator(
        seed=41, n_users=80, anomaly_rate=0.03, malformed_rate=0.01
    )
    create_topic(bootstrap, TOPIC, 1)
    dev = DagsterDev(tmp_path / "dagster_home", env, tmp_path / "dagster_dev.log")
    produced = 0

    def produce_more(n: int) -> None:
        nonlocal produced
        assert (
            produce(bootstrap, TOPIC, n, generator, None, partitions=1).delivered == n
        )
        produced += n

    t0 = time.monotonic()
    try:
        dev.start()
        produce_more(1000)  # cold start: this batch trains the model
        wait_for_batches(dev, produced)

        # 1. SIGKILL of the run process right after bronze_events' commit of batch k,
        #    while batch k+1 is queued behind it
        before = delta_versions(lake, "bronze_events")
        produce_more(2000)
        deadline = time.monotonic() + 300
        while delta_versions(lake, "bronze_events") == before:
            assert time.monotonic() < deadline, dev.log_tail()
            time.sleep(0.05)
        victim = run_worker(dev)
        assert victim is not None, "no run process found"
        os.kill(victim, signal.SIGKILL)
        latest, every = wait_for_batches(dev, produced)
        failed = [r for r in every if r["status"] == "FAILURE"]
        assert failed, "the killed run must show as failed"
        retried = {r["tags"]["anomaly_assets/batch_id"] for r in failed}
        assert all(
            r["tags"]["anomaly_assets/attempt"] != "1"
            for r in latest
            if r["tags"]["anomaly_assets/batch_id"] in retried
        ), "the killed batch succeeded through a retry"
        kill_s = time.monotonic() - t0

        # 2. the broker stops while a run is in its bronze step, and returns a minute later
        produce_more(1000)
        deadline = time.monotonic() + 300
        while True:
            active = [r for r in runs(dev, SENSOR_RUNS) if r["status"] == "STARTED"]
            if active and ("ExecutionStepStartEvent", "bronze") in started_steps(
                dev, active[0]["runId"]
            ):
                break
            assert time.monotonic() < deadline, dev.log_tail()
            time.sleep(0.5)
        kafka_broker.stop()
        time.sleep(60)
        kafka_broker.start()
        latest, every = wait_for_batches(dev, produced)
        outage_run = active[0]["runId"]
        faults = started_steps(dev, outage_run)
        assert ("ExecutionStepUpForRetryEvent", "bronze") in faults or any(
            r["runId"] == outage_run and r["status"] == "FAILURE" for r in every
        ), "the outage was felt: a step retry or a failed, retried run"
    finally:
        dev.stop()
    print(f"chaos: kill step {kill_s:.0f}s, total {time.monotonic() - t0:.0f}s")

    state = fetch_topic_state({"bootstrap.servers": bootstrap}, TOPIC, 10)
    assert state.ends[0] == produced
    skipped = assert_ledger_complete(
        Lake(lake), TOPIC, state.topic_id, {0: (0, produced)}
    )
    assert skipped == {}
