"""Loading the definitions is cheap: it validates and starts no JVM, broker or MLflow."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_validate(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "Validation successful for code location anomaly_assets"
        in proc.stdout + proc.stderr
    )


def test_loading_definitions_starts_no_jvm_and_imports_no_heavy_library():
    code = (
        "import os, subprocess\n"
        "from anomaly_assets.definitions import defs\n"
        "repo = defs.get_repository_def()\n"
        "assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} >= "
        "{'bronze_events', 'bronze_quarantine', 'silver_events'}\n"
        "import sys\n"
        "heavy = {'pandas', 'mlflow', 'sklearn', 'openai'} & set(sys.modules)\n"
        "assert not heavy, f'loading the definitions imported {heavy}'\n"
        "from pyspark import SparkContext\n"
        "assert SparkContext._gateway is None and SparkContext._active_spark_context is None\n"
        "kids = subprocess.run(['pgrep', '-P', str(os.getpid())], capture_output=True, "
        "text=True).stdout.split()\n"
        "names = [open(f'/proc/{k}/comm').read().strip() for k in kids if os.path.exists(f'/proc/{k}')]\n"
        "assert 'java' not in names, names\n"
        "print('NO_JVM')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NO_JVM" in proc.stdout
