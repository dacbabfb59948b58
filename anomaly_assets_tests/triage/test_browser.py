"""An analyst in a real browser (Debian's Chromium, driven by Playwright): log in, open
the queue and the alerted incident, whose user agent holds a script that must show as
text and never run, and dismiss it as a false positive. The next batch's incident of the
same pattern raises no alert (the outbox says why), and the answer and its audit entry
are in Delta."""

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import uvicorn
from deltalake import write_deltalake

from anomaly_assets.alerts.settings import AlertsSpec
from anomaly_assets.devtools.broker import free_port
from anomaly_assets.devtools.receivers import Receivers
from anomaly_assets.feedback import store as feedback
from anomaly_assets.triage import audit
from anomaly_assets.triage.app import TriageConfig, create_app
from anomaly_assets.triage.data import arrow_schema
from anomaly_assets.triage.users import hash_password
from anomaly_assets_tests.alerts.test_delivery import T0, Lake, incident

HOSTILE_UA = "<script>window.pwned = 1; alert('ua')</script>"


@pytest.fixture
def page_server(lakehouse, tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text(
        f"users:\n  ana: {{role: analyst, password: '{hash_password('ana-pw-1')}'}}\n"
    )
    app = create_app(
        TriageConfig(root=lakehouse.root, users_file=str(users), secret_key="k" * 40)
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def events_for_the_page(lakehouse, user: str, n: int) -> None:
    """The incident's events in gold and silver (what the timeline shows)."""
    gold = [
        {
            "event_id": f"{user}-{n}-e{k}",
            "user_id": user,
            "event_type": "login",
            "event_time": T0 + timedelta(minutes=k),
            "severity_percentile": 99.9,
            "is_anomaly": True,
            "status": "CRITICAL",
            "model_version": "3",
            "feature_contributions": [("failed_logins_10m", 0.5)],
            "top_features": ["failed_logins_10m"],
        }
        for k in range(3)
    ]
    silver = [
        {
            **{k: g[k] for k in ("event_id", "user_id", "event_time")},
            "ip_address": "198.51.100.7",
            "user_agent": HOSTILE_UA,
        }
        for g in gold
    ]
    for table, rows in (("gold_anomaly_predictions", gold), ("silver_events", silver)):
        write_deltalake(
            lakehouse.path(table),
            pa.Table.from_pylist(rows, schema=arrow_schema(table)),
            mode="append",
        )


def test_an_analyst_dismisses_in_chromium_and_the_next_batch_is_quiet(
    lakehouse, page_server, tmp_path, monkeypatch
):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required (make browser installs it)"
    with Receivers(tmp_path / "receivers") as receivers:
        monkeypatch.setenv("HOOK_SECRET", receivers.webhook_secret)
        alerts = AlertsSpec.model_validate(
            {
                "channels": {
                    "soc": {
                        "type": "webhook",
                        "url": f"{receivers.base}/hook",
                        "secret_env": "HOOK_SECRET",
                    }
                },
                "routes": [{"channels": ["soc"], "min_status": "WARNING"}],
            }
        )
        lake = Lake(lakehouse)
        first = incident("mallory", 1, 0, threats=("credential_stuffing",))
        lake.put(first)
        events_for_the_page(lakehouse, "mallory", 1)
        lake.run(alerts, datetime.now(UTC))
        assert [r["body"]["incident_id"] for r in receivers.webhook_requests] == [
            "mallory-1"
        ]

        dialogs = []
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{page_server}/incidents/mallory-1")  # -> the login page
            page.fill("input[name=username]", "ana")
            page.fill("input[name=password]", "ana-pw-1")
            page.click("#login button[type=submit]")
            page.wait_for_url("**/incidents/mallory-1")
            page.goto(page_server)
            page.click("a.incident:has-text('mallory')")
            page.wait_for_url("**/incidents/mallory-1")
            assert page.inner_text("#timeline td.ua") == HOSTILE_UA
            assert page.evaluate("window.pwned") is None, "the user agent never ran"
            page.select_option("#answer select[name=action]", "dismiss")
            page.fill("#answer input[name=reason]", "red team exercise")
            page.click("#answer button[type=submit]")
            page.wait_for_selector("#answers li:has-text('dismiss')")
            page.goto(page_server)
            assert "mallory" not in page.inner_text("#queue"), "no longer open"
            browser.close()
        assert dialogs == []

        (row,) = feedback.read(lakehouse.path(feedback.TABLE)).to_pylist()
        assert (row["analyst"], row["action"], row["incident_id"]) == (
            "ana",
            "dismiss",
            "mallory-1",
        )
        assert row["reason"] == "red team exercise" and row["model_version"] == "3"
        entries = feedback.read(lakehouse.path(audit.TABLE)).to_pylist()
        assert ("ana", "login", "ok") in [
            (a["who"], a["action"], a["outcome"]) for a in entries
        ]
        assert ("ana", "answer", "mallory-1", "ok", "dismiss") in [
            (a["who"], a["action"], a["target"], a["outcome"], a["detail"])
            for a in entries
        ]

        # the next batch: the same user and threat again -> suppressed, not sent
        lake.put(incident("mallory", 2, 180, threats=("credential_stuffing",)))
        lake.run(alerts, datetime.now(UTC))
        assert len(receivers.webhook_requests) == 1
        (later,) = [r for r in lake.outbox() if r["subject"] == "mallory-2"]
        assert later["status"] == "suppressed"
        assert "dismissed as a false positive by ana" in later["reason"]
        assert "red team exercise" in later["reason"]
