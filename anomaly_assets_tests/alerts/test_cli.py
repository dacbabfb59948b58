"""anomaly-alerts: a sample to one channel, snoozes recorded and listed without a JVM."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from anomaly_assets.alerts.cli import main, snoozes
from anomaly_assets.devtools.receivers import Receivers


@pytest.fixture(scope="module")
def receivers(tmp_path_factory):
    with Receivers(tmp_path_factory.mktemp("receivers")) as r:
        yield r


def test_test_sends_a_sample_to_the_named_channel(
    receivers, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HOOK_SECRET", receivers.webhook_secret)
    defs = tmp_path / "defs.yaml"  # a stream's defs.yaml: its attributes.alerts
    defs.write_text(
        yaml.safe_dump(
            {
                "type": "anomaly_assets.components.anomaly_pipeline.AnomalyPipeline",
                "attributes": {
                    "alerts": {
                        "channels": {
                            "siem": {
                                "type": "webhook",
                                "url": f"{receivers.base}/hook",
                                "secret_env": "HOOK_SECRET",
                            }
                        }
                    }
                },
            }
        )
    )
    assert main(["test", "--channel", "siem", "--file", str(defs)]) == 0
    body = receivers.webhook_requests[-1]["body"]
    assert body["user_id"] == "test-user" and "test alert" in body["summary"]
    assert "siem: delivered" in capsys.readouterr().out
    assert main(["test", "--channel", "nope", "--file", str(defs)]) == 2
    monkeypatch.delenv("HOOK_SECRET")  # the secret missing: said, not sent
    assert main(["test", "--channel", "siem", "--file", str(defs)]) == 1
    assert "HOOK_SECRET is not set" in capsys.readouterr().out


def test_snooze_then_list(tmp_path, capsys):
    root = str(tmp_path / "lake")
    assert (
        main(
            [
                "--root",
                root,
                "snooze",
                "--user",
                "svc-*",
                "--days",
                "2",
                "--reason",
                "backups",
            ]
        )
        == 0
    )
    assert (
        main(["--root", root, "snooze", "--threat", "bot_activity", "--days", "0.0001"])
        == 0
    )
    assert main(["--root", root, "snooze", "--reason", "nothing named"]) == 2
    assert main(["--root", root, "snooze", "--threat", "phishing"]) == 2
    later = datetime.now(UTC) + timedelta(minutes=1)  # the second has run out by then
    (running,) = snoozes(root, "", later)
    assert running.users == ["svc-*"] and running.reason == "backups"
    capsys.readouterr()
    assert main(["--root", root, "list"]) == 0
    assert "['svc-*']" in capsys.readouterr().out
