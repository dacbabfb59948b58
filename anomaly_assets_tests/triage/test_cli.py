"""anomaly-triage as an operator starts it: init-local makes one analyst (the password
shown once, only its scrypt hash kept) and a session secret, both private to the owner;
serve answers on 127.0.0.1 with the login page, and a missing configuration says what to
set."""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from anomaly_assets.devtools.broker import free_port
from anomaly_assets.triage.users import load_users, verify_password

BIN = Path(sys.executable).parent


def test_init_local_then_serve(tmp_path):
    env = {
        **os.environ,
        "ANOMALY_LOCAL_DIR": str(tmp_path / "local"),
        "ANOMALY_LAKEHOUSE_ROOT": str(tmp_path / "lake"),
    }
    env.pop("ANOMALY_TRIAGE_USERS", None)
    env.pop("ANOMALY_TRIAGE_SECRET", None)
    refused = subprocess.run(
        [BIN / "anomaly-triage", "serve"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "ANOMALY_TRIAGE_USERS" in refused.stderr
    made = subprocess.run(
        [BIN / "anomaly-triage", "init-local"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    password = re.search(r"password (\S+) ", made.stdout).group(1)
    users_file = tmp_path / "local" / "triage" / "users.yaml"
    assert password not in users_file.read_text()
    assert verify_password(password, load_users(users_file)["analyst"].password)
    assert oct(users_file.stat().st_mode & 0o777) == "0o600"
    again = subprocess.run(
        [BIN / "anomaly-triage", "init-local"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stdout == "" and yaml.safe_load(users_file.read_text())[
        "users"
    ].keys() == {"analyst"}

    port = free_port()
    server = subprocess.Popen(
        [BIN / "anomaly-triage", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login") as r:
                    page = r.read().decode()
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.3)
        assert 'name="csrf"' in page and "Log in" in page
    finally:
        server.terminate()
        server.wait(10)
