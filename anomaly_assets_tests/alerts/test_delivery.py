"""Alerts reach real receivers exactly once per incident state: Slack's Web API and an
incoming webhook, a signed webhook, PagerDuty's Events API v2 and SMTP with STARTTLS, through
re-runs, escalations, a receiver outage, their errors, and hostile event text."""

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from anomaly_assets.alerts import outbox
from anomaly_assets.alerts.assets import AlertConfig, raise_alerts
from anomaly_assets.alerts.cli import main as alerts_cli
from anomaly_assets.alerts.settings import AlertsSpec
from anomaly_assets.core import delta_sql
from anomaly_assets.devtools.receivers import Fault, Receivers, SmtpReceiver
from anomaly_assets.feedback import store as feedback
from anomaly_assets.gold.incidents import INCIDENT_SCHEMA
from anomaly_assets.gold.risk import RISK_COLUMNS, RISK_SCHEMA, RiskWindow, risk_rows
from anomaly_assets.stream import Stream

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
LOG = SimpleNamespace(log=SimpleNamespace(info=lambda *_: None))
HOSTILE = "<!channel> *pwned* <script>alert(1)</script> ignore previous instructions"


@pytest.fixture(scope="module")
def receivers(tmp_path_factory):
    with Receivers(tmp_path_factory.mktemp("receivers")) as r:
        yield r


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    with SmtpReceiver(tmp_path_factory.mktemp("smtp")) as s:
        yield s


@pytest.fixture
def env(receivers, smtp, monkeypatch):
    monkeypatch.setenv("SLACK_TOKEN", receivers.slack_token)
    monkeypatch.setenv(
        "SLACK_HOOK", f"{receivers.base}/slack/webhook/{receivers.slack_hook}"
    )
    monkeypatch.setenv("HOOK_SECRET", receivers.webhook_secret)
    monkeypatch.setenv("PD_KEY", receivers.pd_routing_key)
    # one file trusting both self-signed certificates (the HTTPS receivers', SMTP's)
    ca = smtp.cert.parent / "ca.pem"
    ca.write_bytes(smtp.cert.read_bytes() + receivers.cert.read_bytes())
    monkeypatch.setenv("ANOMALY_ALERTS_CA_FILE", str(ca))


def spec(receivers, smtp, channel: str, **extra) -> AlertsSpec:
    channels = {
        "slack": {
            "type": "slack",
            "token_env": "SLACK_TOKEN",
            "channel": f"C-{channel}",
            "base_url": f"{receivers.base}/api/",
            "timeout_s": 2,
        },
        "slack_hook": {"type": "slack", "webhook_url_env": "SLACK_HOOK"},
        "webhook": {
            "type": "webhook",
            "url": f"{receivers.base}/hook",
            "secret_env": "HOOK_SECRET",
            "timeout_s": 2,
        },
        "pagerduty": {
            "type": "pagerduty",
            "routing_key_env": "PD_KEY",
            "url": f"{receivers.tls_base}/v2/enqueue",
        },
        "email": {
            "type": "email",
            "host": "127.0.0.1",
            "port": smtp.port,
            "sender": "alerts@example.org",
            "to": ["soc@example.org"],
        },
    }
    return AlertsSpec.model_validate(
        {
            "channels": {channel: channels[channel]},
            "routes": [{"channels": [channel], "min_status": "WARNING"}],
            **extra,
        }
    )


def incident(user, n, minutes, status="CRITICAL", threats=("credential_stuffing",)):
    t = T0 + timedelta(minutes=minutes)
    return {
        "incident_id": f"{user}-{n}",
        "user_id": user,
        "first_seen": t,
        "last_seen": t + timedelta(minutes=5),
        "event_count": 3,
        "event_ids": [f"{user}-{n}-e{k}" for k in range(3)],
        "event_types": ["login"],
        "top_features": ["failed_logins_10m"],
        "max_severity": 99.9,
        "max_score": 0.999,
        "status": status,
        "batch_ids": ["b1"],
        "threat_types": list(threats),
        "attack_techniques": ["T1110.004"] if "credential_stuffing" in threats else [],
        "attack_tactics": [],
    }


class Lake:
    """gold_user_incidents and gold_user_risk as the pipeline leaves them."""

    def __init__(self, lakehouse):
        self.lakehouse, self.spark = lakehouse, lakehouse.spark_session
        self.incidents: dict[str, dict] = {}

    def put(self, *incidents, drop=()):
        users = {i["user_id"] for i in incidents} | {
            self.incidents[d]["user_id"] for d in drop
        }
        for d in drop:
            del self.incidents[d]
        self.incidents.update({i["incident_id"]: i for i in incidents})
        rows = [i for i in self.incidents.values() if i["user_id"] in users]
        path = self.lakehouse.path("gold_user_incidents")
        frame = self.spark.createDataFrame(
            [tuple(r.values()) for r in rows], INCIDENT_SCHEMA
        )
        writer = frame.write.format("delta").mode("overwrite")
        if delta_sql.exists(self.spark, path):
            listed = ", ".join(delta_sql.literal(u) for u in sorted(users))
            writer = writer.option("replaceWhere", f"user_id IN ({listed})")
        writer.save(path)
        risks = risk_rows(list(self.incidents.values()), RiskWindow())
        self.spark.createDataFrame(
            [tuple(r[c] for c in RISK_COLUMNS) for r in risks], RISK_SCHEMA
        ).write.format("delta").mode("overwrite").save(
            self.lakehouse.path("gold_user_risk")
        )

    def run(self, alerts: AlertsSpec, now=None):
        return raise_alerts(
            LOG, AlertConfig(), self.lakehouse, Stream(), alerts, now=now or T0
        )

    def outbox(self) -> list[dict]:
        box = self.lakehouse.read("alert_outbox")
        return [] if box is None else outbox.rows_where(box, "true")


def test_slack_web_api_once_per_state_updates_in_the_thread(
    env, receivers, smtp, lakehouse
):
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "slack")
    start = len(receivers.slack_messages)

    def mine():
        return receivers.slack_messages[start:]

    lake.put(incident("alice", 1, 0, "WARNING"), incident("bob", 1, 0))
    lake.run(alerts)
    lake.run(alerts)  # a re-run: same states, nothing new
    assert len(mine()) == 2
    first = next(m for m in mine() if "alice" in m["text"])
    # alice escalates: CRITICAL and a new threat -> one reply in her thread
    lake.put(
        incident("alice", 1, 0, "CRITICAL", ("credential_stuffing", "bot_activity"))
    )
    lake.run(alerts)
    lake.run(alerts)
    reply = mine()[-1]
    assert len(mine()) == 3 and reply["thread_ts"] == first["ts"]
    assert reply["text"].startswith("Escalated: bot_activity, credential_stuffing")
    # calming down (back to WARNING) alerts nobody
    lake.put(
        incident("alice", 1, 0, "WARNING", ("credential_stuffing", "bot_activity"))
    )
    lake.run(alerts)
    assert len(mine()) == 3
    keys = [m["metadata"]["event_payload"]["key"] for m in mine()]
    assert len(set(keys)) == 3
    assert {r["status"] for r in lake.outbox()} == {"delivered"}


def test_slack_429_and_invalid_blocks(env, receivers, smtp, lakehouse):
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "slack")
    before = len(receivers.slack_messages)
    receivers.fail_next(
        "slack",
        Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "30"}),
    )
    lake.put(incident("carol", 1, 0))
    lake.run(alerts)
    (row,) = lake.outbox()
    assert row["status"] == "retry" and "429" in row["last_error"]
    lake.run(alerts, T0 + timedelta(seconds=30))  # not due yet: backs off a minute
    assert len(receivers.slack_messages) == before
    lake.run(alerts, T0 + timedelta(minutes=2))
    (row,) = lake.outbox()
    assert row["status"] == "delivered" and row["attempts"] == 2
    assert len(receivers.slack_messages) == before + 1
    # blocks refused (invalid_blocks): the same words sent as text
    receivers.fail_next("slack", Fault(200, {"ok": False, "error": "invalid_blocks"}))
    lake.put(incident("dan", 1, 0))
    lake.run(alerts, T0 + timedelta(minutes=3))
    last = receivers.slack_messages[-1]
    assert last["blocks"] is None and "Summary:" in last["text"]


def test_a_slack_answer_that_never_came_is_looked_up_not_posted_again(
    env, receivers, smtp, lakehouse
):
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "slack")
    start = len(receivers.slack_messages)
    receivers.fail_next("slack", Fault(200, {}, hang_s=3))  # past the 2 s timeout
    lake.put(incident("lea", 1, 0, "WARNING"))
    lake.run(alerts)
    (row,) = lake.outbox()
    assert row["status"] == "retry"  # the message is there, the run does not know
    lake.run(alerts, T0 + timedelta(minutes=2))
    (row,) = lake.outbox()
    posted = receivers.slack_messages[start:]
    assert row["status"] == "delivered" and row["receiver_ref"] == posted[0]["ts"]
    # an update whose answer is lost is found in its thread (replies are not in history)
    receivers.fail_next("slack", Fault(200, {}, hang_s=3))
    lake.put(incident("lea", 1, 0, "CRITICAL"))
    lake.run(alerts, T0 + timedelta(minutes=3))
    lake.run(alerts, T0 + timedelta(minutes=5))
    posted = receivers.slack_messages[start:]
    assert len(posted) == 2 and posted[1]["thread_ts"] == posted[0]["ts"]
    assert {r["status"] for r in lake.outbox()} == {"delivered"}


def test_signed_webhook_outage_then_every_alert_once(env, receivers, smtp, lakehouse):
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "webhook")
    lake.put(*[incident(f"u{k}", 1, k) for k in range(3)])
    receivers.stop()  # the receiver is down for this batch
    try:
        lake.run(alerts)
    finally:
        receivers.start()
    assert {r["status"] for r in lake.outbox()} == {"retry"}
    assert not [
        k for k in receivers.webhook_keys() if k in {r["key"] for r in lake.outbox()}
    ]
    lake.put(incident("u9", 1, 9))  # the next batch, receiver up
    lake.run(alerts, T0 + timedelta(minutes=2))
    keys = {r["key"] for r in lake.outbox()}
    got = [k for k in receivers.webhook_keys() if k in keys]
    assert sorted(got) == sorted(keys) and len(keys) == 4  # each once
    body = receivers.webhook_requests[-1]["body"]
    assert body["attack"] == ["T1110.004 Brute Force: Credential Stuffing"]
    assert body["risk"]["level"] == "moderate"


def test_a_webhook_5xx_is_retried_and_a_4xx_fails_for_good(
    env, receivers, smtp, lakehouse
):
    lake = Lake(lakehouse)
    alerts = spec(receivers, smtp, "webhook", max_attempts=2)
    receivers.fail_next("webhook", Fault(503, {"error": "unavailable"}), times=2)
    lake.put(incident("erin", 1, 0))
    lake.run(alerts)
    lake.run(alerts, T0 + timedelta(minutes=2))
    (row,) = lake.outbox()
    assert (
        row["status"] == "failed"
        and row["attempts"] == 2
        and "503" in row["last_error"]
    )
    receivers.fail_next("webhook", Fault(410, {"error": "gone"}))
    lake.put(incident("frank", 1, 0))
    lake.run(alerts, T0 + timedelta(minutes=3))
    frank = next(r for r in lake.outbox() if r["user_id"] == "frank")
    assert frank["status"] == "failed" and frank["attempts"] == 1


def test_pagerduty_triggers_updates_by_incident_and_resolves(
    env, receivers, smtp, lakehouse
):
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "pagerduty")
    start = len(receivers.pd_events)
    lake.put(incident("gina", 1, 0, "WARNING"))
    lake.run(alerts)
    lake.put(incident("gina", 1, 0, "CRITICAL"))
    lake.run(alerts)
    lake.put(drop=["gina-1"])  # re-scored as normal: the incident is gone
    lake.run(alerts)
    lake.run(alerts)
    events = receivers.pd_events[start:]

    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {"gina-1"}
    assert events[1]["payload"]["severity"] == "critical"
    assert receivers.pd_incidents["gina-1"] == "resolved"
    throttled = len(receivers.rejected)
    receivers.fail_next(
        "pagerduty",
        times=2,  # the client's own quick retry meets the second
        fault=Fault(
            429,
            {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly",
            },
        ),
    )
    lake.put(incident("hank", 1, 0))
    lake.run(alerts)
    hank = next(r for r in lake.outbox() if r["user_id"] == "hank")
    assert hank["status"] == "retry" and "429" in hank["last_error"]
    assert len(receivers.rejected) == throttled + 2
    lake.run(alerts, T0 + timedelta(minutes=2))
    assert receivers.pd_incidents["hank-1"] == "triggered"


def test_email_over_starttls_threads_its_update(env, receivers, smtp, lakehouse):
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "email")
    start = len(smtp.messages)
    lake.put(incident("ivy", 1, 0, "WARNING"))
    lake.run(alerts)
    lake.put(incident("ivy", 1, 0, "CRITICAL"))
    lake.run(alerts)
    first, update = smtp.messages[start:]
    assert update["In-Reply-To"] == first["Message-ID"]
    assert first["To"] == "soc@example.org" and "ivy" in first["Subject"]


def test_a_snooze_recorded_by_the_cli_quiets_the_next_run(
    env, receivers, smtp, lakehouse
):
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "webhook")
    assert (
        alerts_cli(["--root", lakehouse.root, "snooze", "--user", "zed", "--days", "1"])
        == 0
    )
    lake.put(incident("zed", 1, 0), incident("amy", 1, 0))
    lake.run(alerts, datetime.now(UTC))
    got = {r["user_id"]: (r["status"], r["reason"]) for r in lake.outbox()}
    assert got["zed"][0] == "snoozed" and "snoozed until" in got["zed"][1]
    assert got["amy"] == ("delivered", "")


def test_an_analysts_dismissal_suppresses_its_pattern_until_reopened(
    env, receivers, smtp, lakehouse
):
    """analyst_feedback as the triage page writes it: a dismissal of one of [kit*]'s
    incidents suppresses that user's next incident of the same threat for its window (the
    outbox says why); another threat, another user whose id the name would match as a
    pattern, and the time after the window alert (reopening: feedback/test_feedback.py)."""
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "webhook")
    path = lakehouse.path(feedback.TABLE)
    dismissed = incident("[kit*]", 1, 0, threats=("credential_stuffing",))
    feedback.append(
        path,
        [
            feedback.Feedback(
                analyst="ana",
                role="analyst",
                action="dismiss",
                incident_id=dismissed["incident_id"],
                user_id="[kit*]",
                threat_types=["credential_stuffing"],
                reason="pen test",
                until=T0 + timedelta(days=7),
            )
        ],
        now=T0 - timedelta(hours=1),
    )
    lake.put(
        incident("[kit*]", 2, 60, threats=("credential_stuffing",)),
        incident("[kit*]", 3, 600, threats=("bot_activity",)),
        incident("kit", 1, 0, threats=("credential_stuffing",)),
    )
    lake.run(alerts, T0)
    got = {
        (r["user_id"], r["state"]): (r["status"], r["reason"]) for r in lake.outbox()
    }
    status, reason = got[("[kit*]", "CRITICAL:credential_stuffing")]
    assert status == "suppressed"
    assert reason.startswith("dismissed as a false positive by ana until") and (
        "pen test" in reason
    )
    assert got[("[kit*]", "CRITICAL:bot_activity")][0] == "delivered"
    assert got[("kit", "CRITICAL:credential_stuffing")][0] == "delivered"

    # after the window, the pattern alerts again
    lake.put(incident("[kit*]", 4, 7 * 24 * 60 + 120, threats=("credential_stuffing",)))
    lake.run(alerts, T0 + timedelta(days=7, hours=3))
    after = {r["subject"]: r["status"] for r in lake.outbox()}
    assert after["[kit*]-4"] == "delivered"


def test_a_threshold_tuned_from_verdicts_holds_back_what_analysts_dismissed(
    env, receivers, smtp, lakehouse
):
    """20 dismissed credential_stuffing incidents around severity 99.2 and 5 confirmed
    at 99.8: the type alerts from 99.8 on; one at 99.5 is held back with the figures, one
    at 99.9 and another type's at 99.5 are sent."""
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "webhook")
    verdicts = [
        feedback.Feedback(
            analyst="ana",
            role="analyst",
            action="dismiss" if k < 20 else "confirm",
            incident_id=f"old-{k}",
            user_id=f"u{k}",
            threat_type=None if k < 20 else "credential_stuffing",
            threat_types=["credential_stuffing"],
            reason="noise" if k < 20 else "",
            until=T0 + timedelta(days=1) if k < 20 else None,
            max_severity=99.2 if k < 20 else 99.8,
        )
        for k in range(25)
    ]
    feedback.append(
        lakehouse.path(feedback.TABLE), verdicts, now=T0 - timedelta(days=1)
    )
    low, high = incident("lou", 1, 0), incident("hal", 1, 0)
    other = incident("ode", 1, 0, threats=("bot_activity",))
    low["max_severity"], other["max_severity"] = 99.5, 99.5
    lake.put(low, high, other)
    lake.run(alerts, T0)
    got = {r["user_id"]: (r["status"], r["reason"]) for r in lake.outbox()}
    assert got["lou"][0] == "suppressed"
    assert "credential_stuffing alerts from severity 99.80" in got["lou"][1]
    assert "0.20 over all 25 answers" in got["lou"][1]
    assert got["hal"][0] == got["ode"][0] == "delivered"


def test_dismissals_across_users_silence_their_pattern_not_more(
    env, receivers, smtp, lakehouse
):
    """Five users' WARNING credential_stuffing incidents led by failed_logins_10m,
    dismissed at 99.1-99.3: a sixth user's like them is held back with the pattern's
    figures; one more severe, a CRITICAL one and one another feature leads are sent."""
    lake, alerts = Lake(lakehouse), spec(receivers, smtp, "webhook")
    feedback.append(
        lakehouse.path(feedback.TABLE),
        [
            feedback.Feedback(
                analyst="ana",
                role="analyst",
                action="dismiss",
                incident_id=f"old-{k}",
                user_id=f"u{k}",
                threat_types=["credential_stuffing"],
                status="WARNING",
                reason="office NAT",
                until=T0 + timedelta(days=7),
                max_severity=99.1 + k / 20,
                top_features=["failed_logins_10m", "failed_login_ips_10m"],
            )
            for k in range(5)
        ],
        now=T0 - timedelta(hours=2),
    )
    alike, severe, critical, other = (
        incident(user, 1, 0, status=status)
        for user, status in [
            ("six", "WARNING"),
            ("sev", "WARNING"),
            ("cri", "CRITICAL"),
            ("oth", "WARNING"),
        ]
    )
    alike["max_severity"], other["max_severity"], critical["max_severity"] = (
        99.2,
        99.2,
        99.2,
    )
    severe["max_severity"] = 99.6
    other["top_features"] = ["failed_login_ips_10m"]
    lake.put(alike, severe, critical, other)
    lake.run(alerts, T0)
    got = {r["user_id"]: (r["status"], r["reason"]) for r in lake.outbox()}
    assert got["six"] == (
        "suppressed",
        (
            "a pattern analysts dismissed: credential_stuffing incidents led by "
            "failed_logins_10m up to severity 99.30 (5 dismissed about 5 users by 1 analyst, 0 confirmed)"
        ),
    )
    assert got["sev"][0] == got["cri"][0] == got["oth"][0] == "delivered"
    posted = {r["body"].get("user_id") for r in receivers.webhook_requests}
    assert {"sev", "cri", "oth"} <= posted and "six" not in posted


def test_hostile_event_text_arrives_inert(env, receivers, smtp, lakehouse):
    lake = Lake(lakehouse)
    for n, channel in enumerate(("slack", "slack_hook", "email", "webhook")):
        lake.put(incident(HOSTILE, n, 0))
        lake.run(spec(receivers, smtp, channel))
    hook = receivers.slack_hook_messages[-1]
    assert all(
        f["type"] == "plain_text"
        for b in hook["blocks"]
        for f in b.get("fields", [])
        if HOSTILE[:10] in f["text"]
    )
    message = receivers.slack_messages[-1]
    assert "<!channel>" not in message["text"] and "&lt;!channel&gt;" in message["text"]
    # the value is only ever a plain_text object: Slack parses no mention or markup in it
    for block in message["blocks"]:
        for part in [block.get("text") or {}, *block.get("fields", [])]:
            if HOSTILE[:10] in part.get("text", ""):
                assert part["type"] == "plain_text", block
    mrkdwn = [
        f["text"]
        for b in message["blocks"]
        for f in b.get("fields", [])
        if f["type"] == "mrkdwn"
    ]
    assert all("<" not in t for t in mrkdwn)
    mail = smtp.messages[-1]
    html_part = mail.get_body(("html",)).get_content()
    assert "<script>" not in html_part and "&lt;script&gt;" in html_part
    body = receivers.webhook_requests[-1]["body"]
    assert body["user_id"] == HOSTILE  # JSON keeps it as a string, nothing more
    assert json.loads(json.dumps(body))["user_id"] == HOSTILE


def killed_run(root: str, alerts_json: str) -> None:
    """A run of the alert step in its own process and JVM (the chaos test kills it)."""
    from anomaly_assets.resources.lakehouse import LakehouseResource
    from anomaly_assets.resources.spark import SparkResource

    spark = SparkResource(remote=None, shuffle_partitions=2, log_level="ERROR")
    lake = Lake(LakehouseResource(root=root, spark=spark))
    lake.run(AlertsSpec.model_validate_json(alerts_json))


def test_a_run_killed_between_send_and_mark_sends_nothing_twice(
    env, receivers, smtp, lakehouse
):
    """Slack's Web API: the run is killed (SIGKILL) after Slack took the message and
    before the outbox marked it; the next run finds the message by its key and does not
    post again. The webhook: an answer that never came (timeout) is sent again with the
    same Idempotency-Key, which a receiver dedupes by."""
    import os
    import signal
    import subprocess
    import sys
    import time

    lake = Lake(lakehouse)
    alerts = AlertsSpec.model_validate(
        {
            "channels": {
                **spec(receivers, smtp, "slack").channels,
                **spec(receivers, smtp, "webhook").channels,
            },
            "routes": [{"channels": ["slack", "webhook"], "min_status": "WARNING"}],
        }
    )
    lake.put(incident("kim", 1, 0))
    slack_before = len(receivers.slack_messages)
    receivers.fail_next("slack", Fault(200, {}, hang_s=120))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from anomaly_assets_tests.alerts.test_delivery import "
                "killed_run; killed_run(sys.argv[1], sys.argv[2])"
            ),
            lakehouse.root,
            alerts.model_dump_json(),
        ],
        env={**os.environ},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while len(receivers.slack_messages) == slack_before:
            assert child.poll() is None, "the run ended before it posted"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        os.killpg(child.pid, signal.SIGKILL)  # Python and its JVM
    finally:
        child.wait()
    assert {r["status"] for r in lake.outbox()} == {"sending"}
    hooks_before = len(receivers.webhook_requests)
    receivers.fail_next("webhook", Fault(200, {}, hang_s=3))  # past the 2 s timeout
    lake.run(alerts, T0 + timedelta(seconds=1))
    # the killed run's attempt counted: the webhook's third try waits two minutes
    lake.run(alerts, T0 + timedelta(minutes=3))
    rows = {r["channel"]: r for r in lake.outbox()}
    assert rows["webhook"]["attempts"] == 3
    assert {r["status"] for r in rows.values()} == {"delivered"}
    posted = receivers.slack_messages[slack_before:]
    assert len(posted) == 1 and rows["slack"]["receiver_ref"] == posted[0]["ts"]
    hooks = receivers.webhook_requests[hooks_before:]
    assert [h["key"] for h in hooks] == [rows["webhook"]["key"]] * 2
