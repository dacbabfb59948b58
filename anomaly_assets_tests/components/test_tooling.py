"""Dagster's tooling on the project with a declared stream: ``dg list defs`` shows it,
``dg check yaml`` and ``dg check defs`` refuse a broken one with its file, line and field,
and the editor schema is current and catches what the loader catches."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest
import yaml

from anomaly_assets.components.schema import defs_yaml_schema, settings_markdown

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "streams" / "payments" / "defs.yaml"
SCHEMA = ROOT / "docs" / "schemas" / "anomaly_pipeline.schema.json"
SETTINGS = ROOT / "docs" / "stream_settings.md"
DG = str(Path(sys.executable).parent / "dg")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project (its pyproject and package) that dg works in, importing the
    copy's package first: the tests below write deliberately broken streams into its defs/
    folder, which other test modules, running beside them, load from the real project."""
    copy = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(
        ROOT / "anomaly_assets",
        copy / "anomaly_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # streams another module declared in the real project meanwhile (test_ui_streams'
    # checkout) are not this copy's: its defs/ starts empty
    for folder in (copy / "anomaly_assets" / "defs").iterdir():
        if folder.is_dir():
            shutil.rmtree(folder)
    return copy


@pytest.fixture
def declared(project):
    """Writes a defs.yaml into a fresh folder of the project copy's defs/, removed
    afterwards; returns (write, the folder's name)."""
    name = f"test_{uuid.uuid4().hex[:8]}"
    folder = project / "anomaly_assets" / "defs" / name

    def write(text: str) -> Path:
        folder.mkdir()
        (folder / "defs.yaml").write_text(text)
        return folder / "defs.yaml"

    yield write, name
    shutil.rmtree(folder, ignore_errors=True)


def dg(*args: str, project: Path, home: Path | None) -> subprocess.CompletedProcess:
    """``dg`` in the root of ``project``; ``home`` None runs it as a reader's plain shell
    would, without DAGSTER_HOME."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["NO_COLOR"] = "1"
    env["PYTHONPATH"] = str(project)  # the copy's package before the installed one
    if home is not None:
        env["DAGSTER_HOME"] = str(home)
    return subprocess.run(
        [DG, *args],
        check=False,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dg_lists_a_declared_stream_beside_the_default(declared, project, tmp_path):
    write, name = declared
    write(EXAMPLE.read_text().replace("[payments]", f"[{name}]"))
    listed = dg("list", "defs", "--json", project=project, home=tmp_path)
    assert listed.returncode == 0, listed.stderr[-3000:]
    found = json.loads(listed.stdout[listed.stdout.index("{") :])
    keys = {a["asset_key"] for a in found["assets"]}
    for table in ("bronze_events", "silver_events", "ai_enrichment_eval_metrics"):
        assert table in keys and f"{name}/{table}" in keys
    sensors = {s["name"] for s in found["sensors"]}
    assert sensors == {"kafka_offsets_sensor", f"{name}__kafka_offsets_sensor"}
    # as docs/streams.md writes it: in the project root, no DAGSTER_HOME set
    checked = dg("check", "defs", project=project, home=None)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]


def test_dg_check_yaml_names_file_line_and_field(declared, project, tmp_path):
    write, _ = declared
    path = write(
        EXAMPLE.read_text()
        .replace("    topic: payments", "    topik: payments")
        .replace("    - amount_log", "    - amount_logg")
    )
    checked = dg("check", "yaml", project=project, home=tmp_path)
    out = checked.stdout + checked.stderr
    assert checked.returncode != 0, out[-3000:]
    lines = EXAMPLE.read_text().splitlines()
    topic_line = lines.index("    topic: payments") + 1
    feature_line = lines.index("    - amount_log") + 1
    assert f"{path}:{topic_line}" in out and "'topik' was unexpected" in out, out
    assert f"{path}:{feature_line}" in out and "'amount_logg' is not one of" in out, out


def test_dg_check_defs_names_a_feature_the_contract_cannot_feed(
    declared, project, tmp_path
):
    write, _ = declared
    path = write(
        EXAMPLE.read_text()
        .replace(" success, amount, items]", " success]")
        .replace(" add_to_cart, purchase]", " add_to_cart]")  # purchase needs amount
    )
    checked = dg("check", "defs", project=project, home=tmp_path)
    out = checked.stdout + checked.stderr
    assert checked.returncode != 0, out[-3000:]
    features = yaml.safe_load(EXAMPLE.read_text())["attributes"]["features"]
    first = next(i for i, f in enumerate(features) if f.startswith("amount"))
    line = EXAMPLE.read_text().splitlines().index(f"    - {features[first]}") + 1
    assert f"attributes.features.{first} at {path}:{line}" in out, out
    assert f"feature {features[first]!r} needs contract field(s) ['amount']" in out


def test_the_editor_schema_is_current_and_catches_mistakes():
    schema = defs_yaml_schema()
    assert json.loads(SCHEMA.read_text()) == schema, (
        "stale: python -m anomaly_assets.components.schema > "
        "docs/schemas/anomaly_pipeline.schema.json"
    )
    example = yaml.safe_load(EXAMPLE.read_text())
    jsonschema.validate(example, schema)
    for path, value in [
        (("kafka", "topik"), "t"),
        (("severity", "critical_at"), "high"),
        (("features",), ["events_2m"]),
        (("model", "threshold_percentile"), 40),
    ]:
        broken = json.loads(json.dumps(example))
        node = broken["attributes"]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_the_settings_reference_is_current_and_complete():
    """docs/stream_settings.md is what the spec says today, a row per setting."""
    text = SETTINGS.read_text()
    assert text == settings_markdown(), (
        "stale: python -m anomaly_assets.components.schema --markdown > "
        "docs/stream_settings.md"
    )
    schema = defs_yaml_schema()
    attributes = schema["properties"]["attributes"]["properties"]
    for name, prop in attributes.items():
        assert f"| `{name}` |" in text, name
        ref = prop.get("$ref", "").rsplit("/", 1)[-1]
        for inner in schema["$defs"][ref]["properties"] if ref else ():
            assert f"| `{name}.{inner}` |" in text, (name, inner)
    assert "| `model.threshold_percentile` | number > 50 < 100 | `99.0` |" in text
