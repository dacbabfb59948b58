"""The triage page as an attacker and two analysts meet it: login and roles (401, 403),
CSRF, open redirects, attacker-controlled event fields rendered as text under a no-script
policy, answers that become analyst_feedback rows with their audit entries, and two
analysts answering the same incident (the second is told, and keeps their words)."""

import html
import re
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from starlette.testclient import TestClient

from anomaly_assets.feedback import store as feedback
from anomaly_assets.triage import audit
from anomaly_assets.triage.app import TriageConfig, create_app
from anomaly_assets.triage.data import arrow_schema
from anomaly_assets.triage.users import hash_password

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
HOSTILE_UA = '<script>alert("ua")</script>'
HOSTILE_USER = '"><img src=x onerror=alert(1)>'
PASSWORDS = {"ana": "ana-secret-1", "bo": "bo-secret-2", "vic": "vic-secret-3"}
TS = pa.timestamp("us", tz="UTC")


def _write(root, table: str, rows: list[dict]) -> None:
    """``rows`` as the pipeline's ``table`` (the columns the page reads)."""
    write_deltalake(
        str(root / table),
        pa.Table.from_pylist(rows, schema=arrow_schema(table)),
        mode="append",
    )


def build_lake(root):
    """Two users' incidents and the rows around them, as the pipeline leaves them."""
    events, silver, incidents = [], [], []
    for user, n in (("alice", 3), (HOSTILE_USER, 2)):
        ids = []
        for k in range(n + 2):
            eid = f"{user[:5]}-{k}"
            anomalous = k < n
            ids += [eid] if anomalous else []
            at = T0 + timedelta(minutes=k)
            events.append(
                {
                    "event_id": eid,
                    "user_id": user,
                    "event_type": "login",
                    "event_time": at,
                    "country": "FR",
                    "device_type": "desktop",
                    "anomaly_score": 0.9 if anomalous else 0.3,
                    "severity_percentile": 99.95 if anomalous else 40.0,
                    "is_anomaly": anomalous,
                    "status": "CRITICAL" if anomalous else "NORMAL",
                    "model_version": "7",
                    "feature_contributions": [
                        ("failed_logins_10m", 0.4),
                        ("ip_novelty", -0.1),
                    ],
                    "top_features": ["failed_logins_10m"],
                }
            )
            silver.append(
                {
                    "event_id": eid,
                    "user_id": user,
                    "event_time": at,
                    "ip_address": "203.0.113.9",
                    "user_agent": HOSTILE_UA,
                }
            )
        incidents.append(
            {
                "incident_id": f"inc-{user[:5]}",
                "user_id": user,
                "first_seen": T0,
                "last_seen": T0 + timedelta(minutes=n - 1),
                "event_count": n,
                "event_ids": ids,
                "top_features": ["failed_logins_10m"],
                "max_severity": 99.95,
                "status": "CRITICAL",
                "threat_types": ["credential_stuffing"],
                "attack_techniques": ["T1110.004"],
                "attack_tactics": ["credential-access"],
            }
        )
    _write(root, "gold_anomaly_predictions", events)
    _write(root, "silver_events", silver)
    _write(root, "gold_user_incidents", incidents)
    _write(
        root,
        "gold_user_risk",
        [
            {
                "user_id": "alice",
                "as_of": T0,
                "risk_score": 51.8,
                "risk_level": "high",
                "threat_contributions": [("credential_stuffing", 51.8)],
            }
        ],
    )
    _write(
        root,
        "gold_events_enriched",
        [
            {
                "event_id": "alice-0",
                "enrichment_status": "valid",
                "summary": "<b>Stuffing</b> from one IP",
                "recommended_action": "reset",
                "confidence": 0.9,
                "trace_id": "tr-1",
                "enriched_at": T0,
            }
        ],
    )


@pytest.fixture
def lake(tmp_path):
    root = tmp_path / "lake"
    build_lake(root)
    users = tmp_path / "users.yaml"
    users.write_text(
        "users:\n"
        + "".join(
            f"  {name}: {{role: {'viewer' if name == 'vic' else 'analyst'}, "
            f"password: '{hash_password(pw)}'}}\n"
            for name, pw in PASSWORDS.items()
        )
    )
    config = TriageConfig(root=str(root), users_file=str(users), secret_key="s" * 40)
    return root, create_app(config)


def csrf(text: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def based_on(text: str) -> str:
    return re.search(r'name="based_on" value="([^"]*)"', text).group(1)


def login(app, name: str) -> TestClient:
    client = TestClient(app, follow_redirects=False)
    token = csrf(client.get("/login").text)
    r = client.post(
        "/login", data={"username": name, "password": PASSWORDS[name], "csrf": token}
    )
    assert r.status_code == 303, r.text
    return client


def test_login_roles_and_csrf_refuse_what_they_should(lake):
    root, app = lake
    anonymous = TestClient(app, follow_redirects=False)
    r = anonymous.get("/incidents/inc-alice")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert anonymous.post("/incidents/inc-alice/answer", data={}).status_code == 401
    token = csrf(anonymous.get("/login").text)
    wrong = anonymous.post(
        "/login", data={"username": "ana", "password": "nope", "csrf": token}
    )
    assert wrong.status_code == 401 and "Wrong user or password" in wrong.text
    assert (
        anonymous.post(
            "/login", data={"username": "ana", "password": PASSWORDS["ana"]}
        ).status_code
        == 403
    ), "a login without the token (login CSRF)"

    viewer = login(app, "vic")
    page = viewer.get("/incidents/inc-alice").text
    assert 'id="answer"' not in page, "a viewer gets no answer form"
    r = viewer.post(
        "/incidents/inc-alice/answer",
        data={"action": "comment", "comment": "x", "csrf": csrf(page)},
    )
    assert r.status_code == 403

    analyst = login(app, "ana")
    forged = analyst.post(  # a cross-site form: the session cookie, not the token
        "/incidents/inc-alice/answer", data={"action": "comment", "comment": "x"}
    )
    assert forged.status_code == 403
    assert feedback.read(str(root / feedback.TABLE)).num_rows == 0
    outcomes = [
        (r["who"], r["outcome"])
        for r in audit_rows(root)
        if r["action"] in ("login", "answer")
    ]
    assert ("ana", "refused: wrong user or password") in outcomes
    assert ("vic", "refused: viewer") in outcomes
    assert ("ana", "refused: bad CSRF token") in outcomes


def test_open_redirects_are_refused(lake):
    _, app = lake
    client = TestClient(app, follow_redirects=False)
    token = csrf(client.get("/login?next=//evil.example/").text)
    r = client.post(
        "/login",
        data={
            "username": "ana",
            "password": PASSWORDS["ana"],
            "csrf": token,
            "next": "//evil.example/",
        },
    )
    assert r.headers["location"] == "/"


def test_attacker_controlled_fields_render_as_text(lake):
    _, app = lake
    client = login(app, "ana")
    queue = client.get("/")
    assert "script-src" not in queue.headers["content-security-policy"]
    assert "default-src 'none'" in queue.headers["content-security-policy"]
    assert HOSTILE_USER not in queue.text
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in queue.text
    page = client.get("/incidents/inc-alice").text
    assert (
        HOSTILE_UA not in page
        and "&lt;script&gt;alert(&#34;ua&#34;)&lt;/script&gt;" in page
    )
    assert "<b>Stuffing</b>" not in page and "&lt;b&gt;Stuffing&lt;/b&gt;" in page
    assert "<script" not in page


def test_a_dismissal_is_a_feedback_row_and_leaves_the_open_queue(lake):
    root, app = lake
    client = login(app, "ana")
    page = client.get("/incidents/inc-alice").text
    r = client.post(
        "/incidents/inc-alice/answer",
        data={
            "action": "dismiss",
            "reason": "pen test",
            "days": "3",
            "csrf": csrf(page),
            "based_on": based_on(page),
        },
    )
    assert r.status_code == 303, r.text
    (row,) = feedback.read(str(root / feedback.TABLE)).to_pylist()
    assert row["analyst"] == "ana" and row["action"] == "dismiss"
    assert row["threat_types"] == ["credential_stuffing"]
    assert row["event_ids"] == ["alice-0", "alice-1", "alice-2"]
    assert row["model_version"] == "7" and row["reason"] == "pen test"
    assert timedelta(days=2.9) < row["until"] - row["recorded_at"] < timedelta(days=3.1)
    assert "inc-alice" not in client.get("/").text
    assert "inc-alice" in client.get("/?state=dismissed").text
    assert ("ana", "answer", "inc-alice", "ok") in [
        (a["who"], a["action"], a["target"], a["outcome"]) for a in audit_rows(root)
    ]


def test_two_analysts_on_one_incident_the_second_is_told_and_keeps_their_words(lake):
    root, app = lake
    ana, bo = login(app, "ana"), login(app, "bo")
    page_a = ana.get("/incidents/inc-alice").text
    page_b = bo.get("/incidents/inc-alice").text
    assert (
        ana.post(
            "/incidents/inc-alice/answer",
            data={
                "action": "confirm",
                "threat_type": "credential_stuffing",
                "csrf": csrf(page_a),
                "based_on": based_on(page_a),
            },
        ).status_code
        == 303
    )
    late = bo.post(
        "/incidents/inc-alice/answer",
        data={
            "action": "dismiss",
            "reason": "my words <here>",
            "csrf": csrf(page_b),
            "based_on": based_on(page_b),
        },
    )
    assert late.status_code == 409 and 'id="conflict"' in late.text
    assert 'value="my words &lt;here&gt;"' in late.text, "their answer kept in the form"
    rows = feedback.read(str(root / feedback.TABLE)).to_pylist()
    assert [r["analyst"] for r in rows] == ["ana"]
    again = bo.post(
        "/incidents/inc-alice/answer",
        data={
            "action": "dismiss",
            "reason": "my words <here>",
            "csrf": csrf(late.text),
            "based_on": based_on(late.text),
        },
    )
    assert again.status_code == 303
    rows = feedback.read(str(root / feedback.TABLE)).to_pylist()
    assert sorted(r["analyst"] for r in rows) == ["ana", "bo"]
    bo_row = next(r for r in rows if r["analyst"] == "bo")
    assert (
        bo_row["based_on"]
        == next(r for r in rows if r["analyst"] == "ana")["feedback_id"]
    )


def audit_rows(root) -> list[dict]:
    return feedback.read(str(root / audit.TABLE)).to_pylist()


def test_behind_a_trusted_proxy_the_header_names_the_user(tmp_path):
    root = tmp_path / "lake"
    build_lake(root)
    users = tmp_path / "users.yaml"
    users.write_text("users:\n  ana: {role: analyst}\n  vic: {role: viewer}\n")
    app = create_app(
        TriageConfig(
            root=str(root),
            users_file=str(users),
            secret_key="p" * 40,
            proxy_user_header="X-Forwarded-User",
            trusted_proxies=["testclient"],  # the test client's address
        )
    )
    direct = create_app(  # the same page, the header sent from anywhere else
        TriageConfig(
            root=str(root),
            users_file=str(users),
            secret_key="p" * 40,
            proxy_user_header="X-Forwarded-User",
        )
    )
    forged = TestClient(direct, follow_redirects=False).get(
        "/", headers={"X-Forwarded-User": "ana"}
    )
    assert forged.status_code == 303, "a header not from the proxy names nobody"
    client = TestClient(app, follow_redirects=False)
    assert client.get("/").status_code == 303, "no header: not logged in"
    assert client.get("/", headers={"X-Forwarded-User": "mallory"}).status_code == 303
    ana = {"X-Forwarded-User": "ana"}
    page = client.get("/incidents/inc-alice", headers=ana)
    assert page.status_code == 200 and 'id="answer"' in page.text
    no_token = client.post(
        "/incidents/inc-alice/answer",
        headers=ana,
        data={"action": "comment", "comment": "x", "based_on": based_on(page.text)},
    )
    assert no_token.status_code == 403, "the CSRF token still applies"
    ok = client.post(
        "/incidents/inc-alice/answer",
        headers=ana,
        data={
            "action": "comment",
            "comment": "seen",
            "csrf": csrf(page.text),
            "based_on": based_on(page.text),
        },
    )
    assert ok.status_code == 303
    viewer = client.post(
        "/incidents/inc-alice/answer",
        headers={"X-Forwarded-User": "vic"},
        data={"action": "comment", "comment": "x", "csrf": csrf(page.text)},
    )
    assert viewer.status_code == 403
    assert [
        r["comment"] for r in feedback.read(str(root / feedback.TABLE)).to_pylist()
    ] == ["seen"]


def test_the_precision_page_counts_verdicts_per_threat(lake):
    root, app = lake
    client = login(app, "ana")
    for incident, data in (
        ("inc-alice", {"action": "dismiss", "reason": "test account"}),
        ('inc-"><im', {"action": "confirm", "threat_type": "credential_stuffing"}),
    ):
        page = client.get(f"/incidents/{incident}").text
        r = client.post(
            f"/incidents/{incident}/answer",
            data={**data, "csrf": csrf(page), "based_on": based_on(page)},
        )
        assert r.status_code == 303, r.text
    rows = feedback.read(str(root / feedback.TABLE)).to_pylist()
    assert {r["max_severity"] for r in rows} == {99.95}
    assert [r["top_features"] for r in rows] == [["failed_logins_10m"]] * 2
    page = client.get("/precision").text
    cells = re.findall(r"<td>([^<]*)</td>", page.split('id="precision"')[1])
    assert cells[:4] == ["credential_stuffing", "2", "1", "0.50"]


def test_the_precision_page_shows_learned_patterns_and_dismissals_set_aside(lake):
    """Four users' dismissals of a bot pattern teach it; a dismissal of a pattern five
    others confirmed is listed for review, its attacker-chosen user id as text."""
    root, app = lake
    now = datetime.now(UTC)

    def answer(k, action, user, lead):
        return feedback.Feedback(
            analyst="bo",
            role="analyst",
            action=action,
            incident_id=f"i{k}",
            user_id=user,
            threat_type="bot_activity" if action == "confirm" else None,
            threat_types=["bot_activity"],
            reason="" if action == "confirm" else "crawler",
            until=None if action == "confirm" else now + timedelta(days=7),
            max_severity=99.0 + k / 100,
            top_features=[lead],
        )

    hostile = '<script>alert("x")</script>'
    feedback.append(
        str(root / feedback.TABLE),
        [answer(k, "dismiss", f"u{k}", "events_1m") for k in range(4)]
        + [answer(10 + k, "confirm", f"v{k}", "events_10s") for k in range(5)]
        + [answer(20, "dismiss", hostile, "events_10s")],
        now=now - timedelta(hours=1),
    )
    page = login(app, "ana").get("/precision").text
    learned = re.findall(r"<td>([^<]*)</td>", page.split('id="patterns"')[1])
    assert learned[:7] == ["bot_activity", "events_1m", "99.03", "4", "4", "1", "0"]
    aside = page.split('id="set-aside"')[1]
    assert ">i20</a>" in aside and "events_10s" in aside
    assert (
        hostile not in page
        and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in aside
    )


def test_a_confirmation_analysts_contradict_is_listed_for_review(lake):
    """A confirmation of a pattern four others dismissed is listed on the precision
    page, its attacker-chosen comment as text."""
    root, app = lake
    now = datetime.now(UTC)

    def answer(k, action, comment=""):
        return feedback.Feedback(
            analyst="bo",
            role="analyst",
            action=action,
            incident_id=f"r{k}",
            user_id=f"w{k}",
            threat_types=["credential_stuffing"],
            comment=comment,
            until=None if action == "confirm" else now + timedelta(days=7),
            max_severity=99.5,
            top_features=["failed_logins_10m"],
        )

    hostile = "<img src=x onerror=alert(1)>"
    feedback.append(
        str(root / feedback.TABLE),
        [answer(k, "dismiss") for k in range(4)] + [answer(9, "confirm", hostile)],
        now=now - timedelta(hours=1),
    )
    page = login(app, "ana").get("/precision").text
    review = page.split('id="to-review"')[1]
    assert ">r9</a>" in review and "failed_logins_10m" in review
    assert ">r0</a>" not in review
    assert hostile not in page and "&lt;img src=x onerror=alert(1)&gt;" in review


def test_password_guessing_is_slowed_and_a_bad_filter_is_no_error(lake):
    _, app = lake
    bo = login(app, "bo")  # before the guesses: they lock the address out too
    client = TestClient(app, follow_redirects=False)
    token = csrf(client.get("/login").text)
    codes = [
        client.post(
            "/login", data={"username": "ana", "password": f"guess{k}", "csrf": token}
        ).status_code
        for k in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2
    right = client.post(
        "/login", data={"username": "ana", "password": PASSWORDS["ana"], "csrf": token}
    )
    assert right.status_code == 429, "even the right password waits out the window"
    assert bo.get("/?since=not-a-time&until=2026-12-01T10:00").status_code == 200


def test_bulk_answers_skip_incidents_answered_since_the_queue_was_shown(lake):
    root, app = lake
    ana, bo = login(app, "ana"), login(app, "bo")
    queue = bo.get("/").text
    boxes = re.findall(r'name="incident_id" value="([^"]*)"', queue)
    assert len(boxes) == 2
    page = ana.get("/incidents/inc-alice").text  # ana answers one meanwhile
    ana.post(
        "/incidents/inc-alice/answer",
        data={
            "action": "comment",
            "comment": "looking",
            "csrf": csrf(page),
            "based_on": based_on(page),
        },
    )
    r = bo.post(
        "/bulk",
        data={
            "incident_id": [html.unescape(b) for b in boxes],
            "action": "dismiss",
            "reason": "bulk noise",
            "csrf": csrf(queue),
        },
    )
    assert r.status_code == 303 and "1+applied%2C+1+skipped" in r.headers["location"]
    rows = feedback.read(str(root / feedback.TABLE)).to_pylist()
    assert sorted((x["analyst"], x["action"]) for x in rows) == [
        ("ana", "comment"),
        ("bo", "dismiss"),
    ]
    assert next(x for x in rows if x["analyst"] == "bo")["incident_id"] != "inc-alice"
    assert "1 applied, 1 skipped" in bo.get(r.headers["location"]).text
