"""A declared stream as users meet it in `dagster dev`: the webserver loads the project's
defs/ folder beside the default stream, and the UI's lineage, groups, jobs, sensors and
schedules show the stream as its own pipeline, next to an unchanged default one."""

import itertools
import shutil
from pathlib import Path

import pytest
import yaml

from anomaly_assets.devtools.dagster_dev import DagsterDev
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
    """`dagster dev` on the project with the example stream declared as ``checkout``."""
    base = tmp_path_factory.mktemp("ui_streams")
    folder = ROOT / "anomaly_assets" / "defs" / PREFIX
    folder.mkdir()
    try:
        (folder / "defs.yaml").write_text(
            EXAMPLE.read_text().replace("[payments]", f"[{PREFIX}]")
        )
        env = {
            "ANOMALY_LAKEHOUSE_ROOT": str(base / "lake"),
            "ANOMALY_LOCAL_DIR": str(base / "local"),
            "ANOMALY_KAFKA_BOOTSTRAP": kafka_broker.bootstrap_servers,
            "ANOMALY_SENSOR_DEFAULT": "stopped",
        }
        server = DagsterDev(base / "dagster_home", env, base / "dagster_dev.log")
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
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
