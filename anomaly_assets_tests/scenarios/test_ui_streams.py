"""A declared stream as users meet it in `dagster dev`: the webserver loads the project's
defs/ folder beside the default stream, and the UI's lineage, groups, jobs, sensors and
schedules show the stream as its own pipeline, next to an unchanged default one. Its gold
table going stale under its freshness policy, and fresh again, reaches its operations
channel through the real freshness daemon and sensors."""

import itertools
import shutil
import time
from pathlib import Path

import pytest
import yaml

from anomaly_assets.devtools.dagster_dev import DagsterDev
from anomaly_assets.devtools.receivers import Receivers
from anomaly_assets_tests.scenarios.test_ui import CHAIN

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "streams" / "payments" / "defs.yaml"
PREFIX = "checkout"
REPOSITORY = """{ repositoryOrError(repositorySelector: {
  repositoryLocationName: "anomaly_assets", repositoryName: "__repository__"}) {
  ... on Repository { jobs { name } sensors { name sensorState { status } }
    schedules { name } } } }"""
DEFAULTS = """query($job: String!) { runConfigSchemaOrError(selector: {
  repositoryLocationName: "anomaly_assets", repositoryName: "__repository__",
  pipelineName: $job}) { ... on RunConfigSchema { rootDefaultYaml } } }"""


@pytest.fixture(scope="module")
def dev(kafka_broker, tmp_path_factory):
    """`dagster dev` on the project with the example stream declared as ``checkout``, its
    operations channel a signed webhook (a local receiver) and its gold tables stale after
    one minute (the least a FreshnessPolicy takes)."""
    base = tmp_path_factory.mktemp("ui_streams")
    folder = ROOT / "anomaly_assets" / "defs" / PREFIX
    folder.mkdir()
    receivers = Receivers(base / "receivers").start()
    try:
        spec = yaml.safe_load(EXAMPLE.read_text())
        spec["attributes"]["key_prefix"] = [PREFIX]
        spec["attributes"]["alerts"] = {
            "channels": {
                "ops": {
                    "type": "webhook",
                    "url": f"{receivers.base}/hook",
                    "secret_env": "OPS_HOOK_SECRET",
                }
            },
            "operations": {"channels": ["ops"], "stale_after_minutes": 1},
        }
        (folder / "defs.yaml").write_text(yaml.safe_dump(spec))
        env = {
            "ANOMALY_LAKEHOUSE_ROOT": str(base / "lake"),
            "ANOMALY_LOCAL_DIR": str(base / "local"),
            "ANOMALY_KAFKA_BOOTSTRAP": kafka_broker.bootstrap_servers,
            "ANOMALY_SENSOR_DEFAULT": "stopped",
            "OPS_HOOK_SECRET": receivers.webhook_secret,
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",
        }
        server = DagsterDev(base / "dagster_home", env, base / "dagster_dev.log")
        server.receivers = receivers
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        receivers.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_streams_lineage_is_its_own(dev):
    nodes = dev.gql(
        "{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }"
    )["assetNodes"]
    deps = {
        tuple(n["assetKey"]["path"]): {tuple(d["path"]) for d in n["dependencyKeys"]}
        for n in nodes
    }
    groups = {tuple(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    declared_groups = yaml.safe_load(EXAMPLE.read_text())["attributes"]["group_prefix"]
    for prefix, group in [((), ""), ((PREFIX,), declared_groups)]:
        for upstream, downstream in itertools.pairwise(CHAIN):
            assert (*prefix, upstream) in deps[(*prefix, downstream)]
        assert (*prefix, "anomaly_model") in deps[(*prefix, "gold_anomaly_predictions")]
        assert groups[(*prefix, "silver_events")] == f"{group}silver"
    for key, upstream in deps.items():
        assert all((k[0] == PREFIX) == (key[0] == PREFIX) for k in upstream), key
    assert len(deps) == 2 * len({k for k in deps if k[0] != PREFIX})


def test_the_stream_brings_its_jobs_sensor_and_schedule(dev):
    repo = dev.gql(REPOSITORY)["repositoryOrError"]
    jobs = {j["name"] for j in repo["jobs"]}
    for job in ("ingest_job", "ingest_and_train_job", "train_model_job"):
        assert job in jobs and f"{PREFIX}__{job}" in jobs
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    assert sensors == {
        "kafka_offsets_sensor": "STOPPED",
        f"{PREFIX}__kafka_offsets_sensor": "STOPPED",
        # its alerts name an operations channel (the default stream's do not)
        f"{PREFIX}__operations_run_failure_sensor": "RUNNING",
        f"{PREFIX}__operations_freshness_sensor": "RUNNING",
    }
    assert {s["name"] for s in repo["schedules"]} == {
        "optimize_tables_job_schedule",
        f"{PREFIX}__optimize_tables_job_schedule",
    }


def test_the_launchpad_shows_the_streams_settings(dev):
    """What the defs.yaml says is what the launchpad pre-fills for the stream's runs; the
    default stream keeps the assets' own defaults."""
    spec = yaml.safe_load(EXAMPLE.read_text())["attributes"]

    def defaults(job: str) -> dict:
        text = dev.gql(DEFAULTS, {"job": job})["runConfigSchemaOrError"]
        return yaml.safe_load(text["rootDefaultYaml"])["ops"]

    mine = defaults(f"{PREFIX}__ingest_and_train_job")
    model = mine[f"{PREFIX}__anomaly_model"]["config"]
    assert model["threshold_percentile"] == spec["model"]["threshold_percentile"]
    assert model["n_estimators"] == spec["model"]["n_estimators"]
    gold = mine[f"{PREFIX}__gold"]["config"]
    assert gold["critical_at"] == spec["severity"]["critical_at"]
    assert (
        mine[f"{PREFIX}__enrichment"]["config"]["max_groups"]
        == (spec["enrichment"]["max_groups"])
    )
    theirs = defaults("ingest_and_train_job")
    assert theirs["anomaly_model"]["config"]["threshold_percentile"] == 99.0
    assert theirs["gold"]["config"]["critical_at"] == 99.9


REPORT = """mutation($path: [String!]!) { reportRunlessAssetEvents(eventParams: {
  eventType: ASSET_MATERIALIZATION, assetKey: {path: $path}}) {
  __typename ... on PythonError { message } } }"""


def wait_for_alert(receivers, title: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [
            r["body"]
            for r in receivers.webhook_requests
            if r["body"].get("title", "").startswith(title)
        ]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no alert {title!r} in {timeout_s} s"
        time.sleep(1)


def test_a_stale_gold_table_and_its_recovery_reach_operations(dev):
    """ "Report materialization" on the stream's gold table; a minute later its freshness
    policy fails and the operations channel hears of it once; a new materialisation
    sends "fresh again". The table never written (gold_events_enriched) stays quiet."""
    path = [PREFIX, "gold_anomaly_predictions"]
    report = dev.gql(REPORT, {"path": path})["reportRunlessAssetEvents"]
    assert report["__typename"] == "ReportRunlessAssetEventsSuccess", report
    written = time.monotonic()
    stale = wait_for_alert(dev.receivers, f"Stale: {PREFIX}/gold_anomaly_predictions")
    assert time.monotonic() - written >= 60, "stale only after the fail window"
    assert stale["status"] == "WARNING"
    assert dict(map(tuple, stale["details"]))["Last written"] != "never"
    assert stale["links"]["Dagster asset"].endswith(
        f"/assets/{PREFIX}/gold_anomaly_predictions"
    )

    report = dev.gql(REPORT, {"path": path})["reportRunlessAssetEvents"]
    fresh = wait_for_alert(
        dev.receivers, f"Fresh again: {PREFIX}/gold_anomaly_predictions"
    )
    assert fresh["kind"] == "operations_resolved"
    assert fresh["dedup_key"] == stale["dedup_key"], (
        "the resolve ends the same incident"
    )
    time.sleep(20)  # another freshness sensor tick: nothing is sent twice
    titles = [r["body"]["title"] for r in dev.receivers.webhook_requests]
    assert sorted(titles) == sorted([stale["title"], fresh["title"]]), (
        "one alert each, none for the table never written"
    )
    keys = dev.receivers.webhook_keys()
    assert len(keys) == len(set(keys))
