"""The product as users meet it: `dagster dev` (webserver + daemon) on the project's
workspace.yaml and dagster.yaml, its runs on the warm Spark Connect server as ``make dev``
runs them, driven over GraphQL like the UI, and seen by a real browser."""

import itertools
import shutil
import subprocess
import time

import pytest

from anomaly_assets.definitions import ASSETS, CHECKS
from anomaly_assets.devtools.dagster_dev import (
    SENSOR_RUNS,
    TERMINAL,
    DagsterDev,
    failure_messages,
    runs,
    wait_for_run,
)
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.silver.features import FEATURE_COLUMNS

CHAIN = [
    "bronze_events",
    "silver_events",
    "gold_anomaly_predictions",
    "gold_events_enriched",
    "ai_enrichment_eval_metrics",
]


@pytest.fixture(scope="module")
def dagster_dev(kafka_broker, spark_connect_server, tmp_path_factory):
    """`dagster dev` on a sandboxed instance and lakehouse, the sensor off, every run
    attached to the session's warm Spark Connect server (no JVM start per run)."""
    base = tmp_path_factory.mktemp("ui")
    topic = "ui-events"
    env = {
        "ANOMALY_LAKEHOUSE_ROOT": str(base / "lake"),
        "ANOMALY_LOCAL_DIR": str(base / "local"),
        "ANOMALY_KAFKA_BOOTSTRAP": kafka_broker.bootstrap_servers,
        "ANOMALY_KAFKA_TOPIC": topic,
        "ANOMALY_SENSOR_DEFAULT": "stopped",  # started by the race test
        "ANOMALY_MAX_BATCH_EVENTS": "2500",
        "ANOMALY_SPARK_REMOTE": spark_connect_server.url,
    }
    dev = DagsterDev(base / "dagster_home", env, base / "dagster_dev.log").start()
    yield {"client": dev, "topic": topic, "base": base, "broker": kafka_broker}
    dev.stop()


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
        assert n["description"] and n["groupName"] in set(GROUPS)
        assert n["kinds"] and n["owners"], n["assetKey"]


LAUNCH = """mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } }
} }"""
LATEST = """query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetKey { path }
  assetMaterializations(limit: 1) { runId metadataEntries { label
    ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text }
    ... on TableColumnLineageMetadataEntry { lineage { columnName
      columnDeps { assetKey { path } columnName } } } } }
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
    keys = materializable(client)
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
    status = wait_for_run(client, run_id, timeout_s=900)
    assert status == "SUCCESS", failure_messages(client, run_id)

    nodes = {
        n["assetKey"]["path"][0]: n
        for n in client.gql(LATEST, {"keys": keys})["assetNodes"]
    }

    def meta(key):
        (mat,) = nodes[key]["assetMaterializations"]
        assert mat["runId"] == run_id
        return {
            e["label"]: e.get("intValue", e.get("text", e.get("lineage")))
            for e in mat["metadataEntries"]
        }

    def lineage(key):
        return {
            entry["columnName"]: {
                (d["assetKey"]["path"][0], d["columnName"]) for d in entry["columnDeps"]
            }
            for entry in meta(key)["dagster/column_lineage"]
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
    assert (enriched["prompt_name"], enriched["prompt_version"]) == (
        "anomaly_explanation",
        "1",
    )
    assert enriched["provider"] == "offline"
    assert meta("ai_enrichment_eval_metrics")["dagster/row_count"] == 1
    # column lineage, as the UI's column view shows it
    assert lineage("silver_events")["event_id"] == {("bronze_events", "event_id")}
    assert lineage("silver_events")["event_time"] == {("bronze_events", "event_ts")}
    score_deps = lineage("gold_anomaly_predictions")["anomaly_score"]
    assert score_deps == {("silver_events", f) for f in FEATURE_COLUMNS}
    # travel starts from the last place that was not a failed login: the login columns too
    speed = lineage("silver_events")["travel_speed_kmh"]
    assert speed == {
        ("bronze_events", c)
        for c in ("user_id", "event_ts", "country", "event_type", "success")
    }
    assert lineage("gold_events_enriched")["anomaly_status"] == {
        ("gold_anomaly_predictions", "status")
    }
    checks = {
        c["name"]: c["executionForLatestMaterialization"]["status"]
        for n in nodes.values()
        for c in n["assetChecksOrError"].get("checks", [])
    }
    failed = {name: s for name, s in checks.items() if s != "SUCCEEDED"}
    # check ops' specs, and those an asset step answers itself (gold_user_risk)
    every = {spec.name for op in [*CHECKS, *ASSETS] for spec in op.check_specs}
    assert set(checks) == every and not failed, failed


STEP_STATS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status
  stepStats { stepKey startTime endTime } } } }"""
START_SENSOR = """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
  __typename ... on Sensor { name } ... on PythonError { message } } }"""


def launch(client, pipeline: str, asset_keys=None) -> str:
    selector = {
        "repositoryLocationName": "anomaly_assets",
        "repositoryName": "__repository__",
        "pipelineName": pipeline,
    }
    if asset_keys is not None:
        selector["assetSelection"] = asset_keys
    params = {
        "selector": selector,
        "mode": "default",
        "executionMetadata": {"tags": []},
    }
    launched = client.gql(LAUNCH, {"p": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def test_materialize_all_and_training_race_queued_sensor_runs(dagster_dev):
    """Materialize all and train_model_job launched while the sensor queues ingestion runs:
    all succeed, no two steps write one table at once (pools), every offset lands once. The
    sensor, started now, begins where the ledger has landed (the previous test's 3,000
    offsets): its runs cover the 2,000 new ones."""
    from anomaly_assets.ingestion.offsets import fetch_topic_state
    from anomaly_assets_tests.helpers import assert_ledger_complete

    client, broker, topic = (
        dagster_dev["client"],
        dagster_dev["broker"],
        dagster_dev["topic"],
    )
    produce(
        broker.bootstrap_servers,
        topic,
        2000,
        EventGenerator(seed=32, n_users=120, anomaly_rate=0.03),
        None,
        partitions=2,
    )
    sensor = client.gql(
        START_SENSOR,
        {
            "s": {
                "repositoryLocationName": "anomaly_assets",
                "repositoryName": "__repository__",
                "sensorName": "kafka_offsets_sensor",
            }
        },
    )["startSensor"]
    assert sensor["__typename"] == "Sensor", sensor
    keys = materializable(client)
    deadline = time.monotonic() + 900
    while not runs(client, SENSOR_RUNS):  # the sensor has queued its runs: race them
        assert time.monotonic() < deadline, "the sensor requested no run"
        time.sleep(1)
    manual = [launch(client, "__ASSET_JOB", keys), launch(client, "train_model_job")]
    while True:  # until the sensor's runs cover the new offsets and all runs are done
        sensor_runs = runs(client, SENSOR_RUNS)
        covered = sum(int(r["tags"]["anomaly_assets/offsets"]) for r in sensor_runs)
        statuses = {r["runId"]: r["status"] for r in runs(client)}
        if covered >= 2000 and all(s in TERMINAL for s in statuses.values()):
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(3)
    assert covered == 2000, "the sensor asked again for offsets the ledger holds"
    assert all(statuses[r] == "SUCCESS" for r in manual), statuses
    failed = {
        i: failure_messages(client, i) for i, s in statuses.items() if s != "SUCCESS"
    }
    assert not failed, failed

    steps: dict[str, list[tuple[float, float]]] = {}
    for run_id in statuses:
        stats = client.gql(STEP_STATS, {"id": run_id})["runOrError"]["stepStats"]
        for s in stats:
            steps.setdefault(s["stepKey"], []).append((s["startTime"], s["endTime"]))
    for key in ("bronze", "silver", "gold", "anomaly_model"):
        spans = sorted(steps.get(key, []))
        for (_, a_end), (b_start, _) in itertools.pairwise(spans):
            assert b_start >= a_end, f"two {key} steps overlapped: {spans}"
    assert len(steps["bronze"]) >= 2 and len(steps["anomaly_model"]) >= 2
    assert len(steps["silver"]) >= 2, "the step keys are the ops' names"

    class Lake:
        def path(self, name):
            return str(dagster_dev["base"] / "lake" / name)

    state = fetch_topic_state(
        {"bootstrap.servers": broker.bootstrap_servers}, topic, 10
    )
    spans = {p: (0, end) for p, end in state.ends.items()}
    assert sum(state.ends.values()) == 5000
    assert assert_ledger_complete(Lake(), topic, state.topic_id, spans) == {}


GROUPS = {
    "bronze": ["bronze_events", "bronze_quarantine", "bronze_offset_ledger"],
    "silver": ["silver_events", "silver_user_profile"],
    "gold": [
        "anomaly_model",
        "gold_anomaly_predictions",
        "gold_batch_drift",
        "gold_model_monitoring",
        "gold_user_incidents",
        "gold_user_risk",
    ],
    "ai": [
        "gold_events_enriched",
        "llm_explanation_cache",
        "ai_enrichment_eval_metrics",
    ],
    "feedback": ["analyst_feedback"],
    "alerts": ["alert_outbox"],
}


def materializable(client) -> list[dict]:
    """What "Materialize all" selects: every asset but the external ones
    (analyst_feedback, which the triage page writes)."""
    nodes = client.gql("{ assetNodes { assetKey { path } isMaterializable } }")
    return [n["assetKey"] for n in nodes["assetNodes"] if n["isMaterializable"]]


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
