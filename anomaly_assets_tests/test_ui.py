"""The product as users meet it: `dagster dev` (webserver + daemon) on the project's
workspace.yaml and dagster.yaml, driven over GraphQL like the UI, and seen by a real browser."""

import itertools
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

import pytest

from anomaly_assets.devtools.broker import free_port
from anomaly_assets.devtools.generator import EventGenerator, produce

ROOT = Path(__file__).resolve().parents[1]
CHAIN = [
    "bronze_events",
    "silver_events",
    "gold_anomaly_predictions",
    "gold_events_enriched",
    "ai_enrichment_eval_metrics",
]


class Dagster:
    def __init__(self, url: str) -> None:
        self.url = url

    def gql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = json.load(resp)
        assert "errors" not in out, out["errors"]
        return out["data"]


@pytest.fixture(scope="module")
def dagster_dev(kafka_broker, tmp_path_factory):
    """`dagster dev` in its own process group, on a sandboxed instance and lakehouse."""
    base = tmp_path_factory.mktemp("ui")
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    topic = "ui-events"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ANOMALY_LAKEHOUSE_ROOT": str(base / "lake"),
        "ANOMALY_LOCAL_DIR": str(base / "local"),
        "ANOMALY_KAFKA_BOOTSTRAP": kafka_broker.bootstrap_servers,
        "ANOMALY_KAFKA_TOPIC": topic,
        "ANOMALY_SENSOR_DEFAULT": "stopped",  # this module drives runs itself
    }
    port = free_port()
    log = open(base / "dagster_dev.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # `dagster dev` ignores SIGTERM in the background: stop the group
    )
    client = Dagster(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 120
    while True:
        try:
            if client.gql("{ assetNodes { id } }")["assetNodes"]:
                break
        except (urllib.error.URLError, ConnectionError, AssertionError):
            pass
        assert proc.poll() is None, (base / "dagster_dev.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "dagster dev did not come up in 120 s"
        time.sleep(1)
    yield {"client": client, "topic": topic, "base": base, "broker": kafka_broker}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    log.close()


def test_lineage_over_graphql(dagster_dev):
    nodes = dagster_dev["client"].gql(
        "{ assetNodes { assetKey { path } dependencyKeys { path } groupName kinds "
        "description owners { ... on TeamAssetOwner { team } } } }"
    )["assetNodes"]
    deps = {
        n["assetKey"]["path"][0]: {d["path"][0] for d in n["dependencyKeys"]}
        for n in nodes
    }
    for upstream, downstream in itertools.pairwise(CHAIN):
        assert upstream in deps[downstream], f"{upstream} -> {downstream} missing"
    assert "anomaly_model" in deps["gold_anomaly_predictions"]
    assert "silver_events" in deps["anomaly_model"]
    for n in nodes:
        assert n["description"] and n["groupName"] in {"bronze", "silver", "gold", "ai"}
        assert n["kinds"] and n["owners"], n["assetKey"]


LAUNCH = """mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } }
} }"""
LATEST = """query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetKey { path }
  assetMaterializations(limit: 1) { runId metadataEntries { label
    ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } }
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { status } } } } } }"""


def test_materialize_all_then_metadata_and_checks(dagster_dev):
    client, broker = dagster_dev["client"], dagster_dev["broker"]
    labels = dagster_dev["base"] / "local" / "labels.csv"
    produce(
        broker.bootstrap_servers,
        dagster_dev["topic"],
        3000,
        EventGenerator(seed=31, n_users=120, anomaly_rate=0.03),
        labels,
        partitions=2,
    )
    keys = [
        n["assetKey"]
        for n in client.gql("{ assetNodes { assetKey { path } } }")["assetNodes"]
    ]
    launched = client.gql(
        LAUNCH,
        {
            "p": {
                "selector": {
                    "repositoryLocationName": "anomaly_assets",
                    "repositoryName": "__repository__",
                    "pipelineName": "__ASSET_JOB",
                    "assetSelection": keys,
                },
                "mode": "default",
                "executionMetadata": {"tags": []},
            }
        },
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 900
    while True:
        status = client.gql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
            {"id": run_id},
        )["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        assert time.monotonic() < deadline, f"run {run_id} still {status} after 15 min"
        time.sleep(3)
    assert status == "SUCCESS"

    nodes = {
        n["assetKey"]["path"][0]: n
        for n in client.gql(LATEST, {"keys": keys})["assetNodes"]
    }

    def meta(key):
        (mat,) = nodes[key]["assetMaterializations"]
        assert mat["runId"] == run_id
        return {
            e["label"]: e.get("intValue", e.get("text")) for e in mat["metadataEntries"]
        }

    bronze = meta("bronze_events")
    assert (
        bronze["dagster/row_count"] + meta("bronze_quarantine")["dagster/row_count"]
        == 3000
    )
    assert bronze["delta_version"] == 0 and bronze["offsets_in_batch"] == 3000
    assert meta("silver_events")["dagster/row_count"] == bronze["dagster/row_count"]
    model = meta("anomaly_model")
    assert model["mlflow_run_id"] and model["model_version"] == "1"
    assert model["quality_gate"] == "passed"
    assert meta("gold_anomaly_predictions")["model_version"] == "1"
    enriched = meta("gold_events_enriched")
    assert enriched["prompt_version"].startswith("explain_anomalies_v1@")
    assert enriched["provider"] == "offline"
    assert meta("ai_enrichment_eval_metrics")["dagster/row_count"] == 1
    checks = {
        c["name"]: c["executionForLatestMaterialization"]["status"]
        for n in nodes.values()
        for c in n["assetChecksOrError"].get("checks", [])
    }
    failed = {name: s for name, s in checks.items() if s != "SUCCEEDED"}
    assert len(checks) == 12 and not failed, failed


GROUPS = {
    "bronze": ["bronze_events", "bronze_quarantine"],
    "silver": ["silver_events"],
    "gold": ["anomaly_model", "gold_anomaly_predictions", "gold_batch_drift"],
    "ai": [
        "gold_events_enriched",
        "llm_explanation_cache",
        "ai_enrichment_eval_metrics",
    ],
}


def test_browser_renders_the_asset_lineage(dagster_dev, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required (make browser installs it)"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1600,1000",
        "--virtual-time-budget=30000",
    ]
    base = dagster_dev["client"].url

    def dom(path: str) -> str:
        return subprocess.run(
            [chromium, *flags, "--dump-dom", f"{base}{path}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        ).stdout

    # The global lineage shows the four groups; each group's lineage page shows its assets.
    page = dom("/asset-groups")
    assert "Global asset lineage" in page
    for group, assets in GROUPS.items():
        assert f">{group}<" in page, f"group {group} missing from the global lineage"
        group_page = dom(f"/locations/anomaly_assets/asset-groups/{group}/lineage")
        for name in assets:
            assert name in group_page, (
                f"{name} not rendered on the {group} lineage page"
            )
    shot = tmp_path / "gold_lineage.png"
    subprocess.run(
        [
            chromium,
            *flags,
            f"--screenshot={shot}",
            f"{base}/locations/anomaly_assets/asset-groups/gold/lineage",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
