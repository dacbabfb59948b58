"""`dagster dev` (webserver + daemon + code server) as users start it, driven over GraphQL.

It runs in its own process group: `dagster dev` ignores SIGTERM when started in the
background, so stopping means signalling the whole group and checking it is gone.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from anomaly_assets.devtools.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


def sandbox_env(
    base: Path, bootstrap: str, topic: str, **settings: str
) -> dict[str, str]:
    """Environment for a `dagster dev` on its own lakehouse, local folder and topic, the
    sensor on and ticking every 5 s; ``settings`` adds or overrides ANOMALY_* values."""
    return {
        "ANOMALY_LAKEHOUSE_ROOT": str(base / "lake"),
        "ANOMALY_LOCAL_DIR": str(base / "local"),
        "ANOMALY_KAFKA_BOOTSTRAP": bootstrap,
        "ANOMALY_KAFKA_TOPIC": topic,
        "ANOMALY_SENSOR_DEFAULT": "running",
        "ANOMALY_SENSOR_INTERVAL_S": "5",
        **{f"ANOMALY_{k.upper()}": v for k, v in settings.items()},
    }


class DagsterDev:
    def __init__(self, home: Path, env: dict[str, str], log: Path) -> None:
        self.home, self.env, self.log_path = home, env, log
        self.proc: subprocess.Popen | None = None
        self.url = ""
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")

    def start(self, timeout_s: float = 120) -> "DagsterDev":
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "dagster"),
                    *(
                        "dev",
                        "-w",
                        "workspace.yaml",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                    ),
                ],
                cwd=ROOT,
                env={**os.environ, **self.env, "DAGSTER_HOME": str(self.home)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.gql("{ assetNodes { id } }")["assetNodes"]:
                    return self
            except (urllib.error.URLError, ConnectionError, AssertionError):
                pass
            assert self.proc.poll() is None, self.log_tail()
            assert time.monotonic() < deadline, f"dagster dev not up in {timeout_s} s"
            time.sleep(1)

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL what is left after 30 s; returns once it is empty."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            self.proc.poll()  # reap the leader: a zombie is not a running process
            left = group_members(pgid)
            if not left:
                break
            if time.monotonic() > deadline:
                os.killpg(pgid, signal.SIGKILL)
            assert time.monotonic() < deadline + 30, f"still running: {left}"
            time.sleep(0.5)
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def gql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = json.load(resp)
        assert "errors" not in out, out["errors"]
        return out["data"]


def group_members(pgid: int) -> list[str]:
    """Live (non-zombie) processes of a process group, as "pid name"."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        name_end = text.rindex(")")
        state, _ppid, pgrp = text[name_end + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            out.append(f"{stat.parent.name} {text[text.index('(') + 1 : name_end]}")
    return out


RUNS = """query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results {
  runId jobName status tags { key value } } } } }"""
FAILURES = """query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
  __typename ... on ExecutionStepFailureEvent { stepKey error { message } }
  ... on RunFailureEvent { message } } } } }"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def runs(dev: DagsterDev, tags: dict[str, str] | None = None) -> list[dict]:
    """Runs (newest first), each with its tags as a dict."""
    f = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
    out = dev.gql(RUNS, {"f": f})["runsOrError"]["results"]
    for r in out:
        r["tags"] = {t["key"]: t["value"] for t in r["tags"]}
    return out


def failure_messages(dev: DagsterDev, run_id: str) -> list[str]:
    events = dev.gql(FAILURES, {"id": run_id})["logsForRun"]["events"]
    return [
        f"{e.get('stepKey') or 'run'}: {(e.get('error') or {}).get('message') or e.get('message')}"
        for e in events
        if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
    ]


def wait_for_run(dev: DagsterDev, run_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = dev.gql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
            {"id": run_id},
        )["runOrError"]["status"]
        if status in TERMINAL:
            return status
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(3)


SENSOR_RUNS = {"dagster/sensor_name": "kafka_offsets_sensor"}


def wait_for_sensor_offsets(
    dev: DagsterDev, total: int, timeout_s: float = 600, poll_s: float = 1.0
) -> list[dict]:
    """The offsets sensor's runs once they cover ``total`` offsets and have all finished.

    A failed or cancelled run raises at once with its step errors."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = runs(dev, SENSOR_RUNS)
        failed = [r for r in found if r["status"] in ("FAILURE", "CANCELED")]
        if failed:
            raise RuntimeError(
                "; ".join(
                    f"{r['jobName']} {r['runId']}: {failure_messages(dev, r['runId'])}"
                    for r in failed
                )
            )
        covered = sum(int(r["tags"]["anomaly_assets/offsets"]) for r in found)
        if covered >= total and all(r["status"] in TERMINAL for r in found):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{covered} of {total} offsets in {len(found)} runs after {timeout_s} s\n"
                + dev.log_tail()
            )
        time.sleep(poll_s)


def wait_for_batches(
    dev: DagsterDev, total: int, timeout_s: float = 900, poll_s: float = 2.0
) -> tuple[list[dict], list[dict]]:
    """(latest run of each batch, every run) once the sensor's batches cover ``total``
    offsets and each batch's latest run succeeded. Failed attempts that were retried are
    allowed; nothing may still be running."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = runs(dev, SENSOR_RUNS)
        latest: dict[str, dict] = {}
        for r in found:  # newest first
            latest.setdefault(r["tags"]["anomaly_assets/batch_id"], r)
        covered = sum(int(r["tags"]["anomaly_assets/offsets"]) for r in latest.values())
        settled = all(r["status"] in TERMINAL for r in found)
        succeeded = all(r["status"] == "SUCCESS" for r in latest.values())
        if covered >= total and settled and succeeded:
            return list(latest.values()), found
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{covered} of {total} offsets; latest runs "
                f"{[(r['runId'][:8], r['status']) for r in latest.values()]}\n"
                + dev.log_tail()
            )
        time.sleep(poll_s)
