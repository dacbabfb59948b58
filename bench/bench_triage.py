"""Triage page speed on a big lakehouse (p95 <= 300 ms with 1M gold rows and 10,000
incidents), and what a week of analysts' answers does to false alerts (``--feedback``).

Writes the tables the page reads with the deltalake package (1M gold and silver rows over
2,000 users and 30 days, in 20 commits as batches leave them; 10,000 incidents; risk for
every user; explanations for the incidents' first events), then serves the page with
uvicorn on 127.0.0.1 and times, over HTTP as a browser asks: the queue (unfiltered, and
filtered by threat, tactic, user), and incident pages of random incidents.

    python bench/bench_triage.py [--rows 1000000] [--incidents 10000] [--requests 200]

**Feedback** (``--feedback``, both generator mixes): the champion is trained as in
bench_alerts.py, then a held-out stream runs in ``--days`` batches ("days") through the
whole ingest_job selection, alerting a local signed webhook (a WARNING route, no rate
limit). After each day a simulated analyst answers every alert delivered that day from
the labels, wrong ``--wrong`` (10 %) of the time: confirm, or dismiss as a false positive
for 7 days; the next days' alerts follow the dismissals and the thresholds tuned from the
verdicts. Over days 2 on, the alerts the data called for on incidents holding no labelled
attack, per 10,000 normal events, without the feedback (sent, plus held back by it) and
with it (sent): target with <= half of without, and no alert on an incident holding a
labelled attack held back by the feedback.

    python bench/bench_triage.py --feedback [--mix generator commuters] [--days 7]
"""

import argparse
import random
import re
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import uvicorn
from deltalake import write_deltalake

from anomaly_assets.devtools.broker import free_port
from anomaly_assets.silver.catalogue import THREAT_FEATURES
from anomaly_assets.triage.app import TriageConfig, create_app
from anomaly_assets.triage.users import hash_password

TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2026, 11, 1, tzinfo=UTC)
THREATS = sorted(THREAT_FEATURES)
TACTICS = [
    "credential-access",
    "initial-access",
    "exfiltration",
    "impact",
    "collection",
]


def build(root: Path, rows: int, n_incidents: int, users: int = 2000) -> list[str]:
    rng = random.Random(7)
    span = 30 * 86400
    batches = 20
    per = rows // batches
    for b in range(batches):
        ids = [f"e{b}-{k}" for k in range(per)]
        user = [f"user-{rng.randrange(users)}" for _ in range(per)]
        at = [T0 + timedelta(seconds=rng.randrange(span)) for _ in range(per)]
        anomalous = [rng.random() < 0.01 for _ in range(per)]
        gold = pa.table(
            {
                "event_id": ids,
                "user_id": user,
                "event_type": ["login"] * per,
                "event_time": pa.array(at, TS),
                "country": ["FR"] * per,
                "device_type": ["desktop"] * per,
                "anomaly_score": [rng.random() for _ in range(per)],
                "severity_percentile": [99.5 if a else 50.0 for a in anomalous],
                "is_anomaly": anomalous,
                "status": ["CRITICAL" if a else "NORMAL" for a in anomalous],
                "model_version": ["4"] * per,
                "feature_contributions": pa.array(
                    [[("failed_logins_10m", 0.4), ("ip_novelty", 0.1)]] * per,
                    pa.map_(pa.string(), pa.float64()),
                ),
                "top_features": pa.array(
                    [["failed_logins_10m"]] * per, pa.list_(pa.string())
                ),
            }
        )
        write_deltalake(str(root / "gold_anomaly_predictions"), gold, mode="append")
        silver = pa.table(
            {
                "event_id": ids,
                "user_id": user,
                "event_time": pa.array(at, TS),
                "ip_address": ["203.0.113.1"] * per,
                "user_agent": ["Mozilla/5.0"] * per,
            }
        )
        write_deltalake(str(root / "silver_events"), silver, mode="append")
        if b == 0:  # the incidents are made of this batch's anomalies
            flagged = [
                (i, u, t)
                for i, u, t, a in zip(ids, user, at, anomalous, strict=True)
                if a
            ]
    incidents, enriched = [], []
    for k in range(n_incidents):
        event_id, owner, first = flagged[k % len(flagged)]
        threat = rng.choice(THREATS)
        eids = [event_id]
        incidents.append(
            {
                "incident_id": f"inc-{k}",
                "user_id": owner,
                "first_seen": first,
                "last_seen": first + timedelta(minutes=5),
                "event_count": 1,
                "event_ids": eids,
                "top_features": ["failed_logins_10m"],
                "max_severity": 99.0 + rng.random(),
                "status": rng.choice(["WARNING", "CRITICAL"]),
                "threat_types": [threat],
                "attack_techniques": ["T1110.004"],
                "attack_tactics": [rng.choice(TACTICS)],
            }
        )
        enriched.append(
            {
                "event_id": eids[0],
                "enrichment_status": "valid",
                "summary": "a summary",
                "risk_explanation": "",
                "recommended_action": "review",
                "confidence": 0.8,
                "trace_id": f"tr-{k}",
                "enriched_at": first,
            }
        )
    write_deltalake(str(root / "gold_user_incidents"), pa.Table.from_pylist(incidents))
    write_deltalake(str(root / "gold_events_enriched"), pa.Table.from_pylist(enriched))
    risk = [
        {
            "user_id": f"user-{u}",
            "as_of": T0,
            "risk_score": rng.random() * 100,
            "risk_level": "moderate",
            "threat_contributions": [("credential_stuffing", 10.0)],
        }
        for u in range(users)
    ]
    write_deltalake(
        str(root / "gold_user_risk"),
        pa.Table.from_pylist(
            risk,
            schema=pa.schema(
                [
                    ("user_id", pa.string()),
                    ("as_of", TS),
                    ("risk_score", pa.float64()),
                    ("risk_level", pa.string()),
                    ("threat_contributions", pa.map_(pa.string(), pa.float64())),
                ]
            ),
        ),
    )
    return [i["incident_id"] for i in incidents]


def feedback_week(mix_name: str, tmp: Path, args) -> dict:
    """Figures of one mix's simulated week (module doc)."""
    import os

    from bench_alerts import LABEL_FILES, anomaly_labels, held_out_run
    from deltalake import DeltaTable

    from anomaly_assets.devtools.receivers import Receivers
    from anomaly_assets.feedback import store as feedback

    lake = tmp / "lake"
    rng = random.Random(11)
    hook = Receivers(tmp / "receivers").start()
    os.environ["BENCH_TRIAGE_HOOK_SECRET"] = hook.webhook_secret
    alerts = {
        "channels": {
            "soc": {
                "type": "webhook",
                "url": f"{hook.base}/hook",
                "secret_env": "BENCH_TRIAGE_HOOK_SECRET",
            }
        },
        "routes": [{"channels": ["soc"], "min_status": "WARNING"}],
        "rate_limit_per_hour": 1_000_000,
    }
    answered: set[str] = set()
    days: list[dict] = []

    attack: set[str] = set()

    def analyst(day: int) -> None:
        if not attack:  # both streams were produced before the first batch
            attack.update(anomaly_labels(tmp)["event_id"])
        incidents = {
            r["incident_id"]: r
            for r in DeltaTable(str(lake / "gold_user_incidents"))
            .to_pyarrow_table(
                columns=[
                    "incident_id",
                    "user_id",
                    "event_ids",
                    "threat_types",
                    "max_severity",
                    "top_features",
                ]
            )
            .to_pylist()
        }
        box = DeltaTable(str(lake / "alert_outbox")).to_pyarrow_table(
            columns=["incident_id", "kind", "status", "update_of"]
        )
        now = datetime.now(UTC)
        answers = []
        for r in box.to_pylist():
            i = r["incident_id"]
            if r["kind"] != "incident" or r["status"] != "delivered" or i in answered:
                continue
            incident = incidents.get(i)
            if incident is None:
                continue
            answered.add(i)
            truth = bool(attack & set(incident["event_ids"]))
            if rng.random() < args.wrong:
                truth = not truth
            threats = incident["threat_types"] or []
            answers.append(
                feedback.Feedback(
                    analyst="simulated",
                    role="analyst",
                    action="confirm" if truth else "dismiss",
                    incident_id=i,
                    user_id=incident["user_id"],
                    threat_type=(threats[0] if threats else None) if truth else None,
                    threat_types=threats,
                    reason="" if truth else "simulated: not an attack",
                    until=None if truth else now + timedelta(days=7),
                    max_severity=incident["max_severity"],
                    event_ids=incident["event_ids"],
                    top_features=incident["top_features"] or [],
                )
            )
        if answers:
            feedback.append(str(lake / feedback.TABLE), answers)
        gold = DeltaTable(str(lake / "gold_anomaly_predictions")).to_pyarrow_table(
            columns=["event_id", "batch_id"]
        )
        days.append(
            {
                "end": datetime.now(UTC),
                "answers": len(answers),
                "batches": set(gold["batch_id"].to_pylist()),
            }
        )
        print(f"{mix_name}: day {day + 1}: {len(answers)} answers")

    try:
        held_out_run(mix_name, tmp, args, alerts, analyst)
    finally:
        hook.stop()
    if args.keep:  # the tables and labels, to study without running again
        keep = Path(args.keep) / mix_name
        shutil.copytree(lake, keep / "lake", dirs_exist_ok=True)
        for f in LABEL_FILES:
            shutil.copy(tmp / f, keep / f)
    incidents = {
        r["incident_id"]: set(r["event_ids"])
        for r in DeltaTable(str(lake / "gold_user_incidents"))
        .to_pyarrow_table(columns=["incident_id", "event_ids"])
        .to_pylist()
    }
    gold = (
        DeltaTable(str(lake / "gold_anomaly_predictions"))
        .to_pyarrow_table(columns=["event_id", "batch_id"])
        .to_pylist()
    )
    box = (
        DeltaTable(str(lake / "alert_outbox"))
        .to_pyarrow_table(
            columns=[
                "incident_id",
                "kind",
                "status",
                "reason",
                "created_at",
                "update_of",
            ]
        )
        .to_pylist()
    )
    by_feedback = (
        "dismissed as a false positive",
        "a pattern analysts dismissed",
        "below the threshold tuned",
    )
    rows = []
    previous: set = set()
    start = datetime.min.replace(tzinfo=UTC)
    for d, day in enumerate(days):
        new_batches = day["batches"] - previous
        previous = day["batches"]
        normal = sum(
            1
            for g in gold
            if g["batch_id"] in new_batches and g["event_id"] not in attack
        )
        called = sent = lost = true_sent = 0
        for r in box:
            if (
                r["kind"] != "incident"
                or r["update_of"]
                or not start < r["created_at"] <= day["end"]
            ):
                continue
            events = incidents.get(r["incident_id"])
            if events is None:
                continue
            true = bool(attack & events)
            held = r["status"] == "suppressed" and (r["reason"] or "").startswith(
                by_feedback
            )
            if r["status"] == "delivered":
                sent += not true
                true_sent += true
            if r["status"] == "delivered" or held:
                called += not true
            lost += true and held
        start = day["end"]
        rows.append(
            {
                "day": d + 1,
                "normal": normal,
                "called": called,
                "sent": sent,
                "lost": lost,
                "true_sent": true_sent,
                "answers": day["answers"],
            }
        )
    return {"days": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--feedback", action="store_true")
    parser.add_argument("--mix", nargs="*", default=["generator", "commuters"])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--wrong", type=float, default=0.10)
    parser.add_argument("--train-events", type=int, default=100_000)
    parser.add_argument("--events-per-day", type=int, default=5_000)
    parser.add_argument("--keep", help="folder to keep the tables and labels in")
    args = parser.parse_args()
    if args.feedback:
        args.batches, args.eval_events = args.days, args.days * args.events_per_day
        for mix in args.mix:
            with tempfile.TemporaryDirectory(prefix="bench_feedback_") as tmp:
                report_week(mix, feedback_week(mix, Path(tmp), args), args)
        return
    with tempfile.TemporaryDirectory(prefix="bench_triage_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ids = build(tmp / "lake", args.rows, args.incidents)
        print(f"tables written in {time.perf_counter() - t0:.0f} s")
        (tmp / "users.yaml").write_text(
            f"users:\n  ana: {{role: analyst, password: '{hash_password('pw')}'}}\n"
        )
        app = create_app(
            TriageConfig(
                root=str(tmp / "lake"),
                users_file=str(tmp / "users.yaml"),
                secret_key="b" * 40,
            )
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, follow_redirects=False) as client:
                token = re.search(
                    r'name="csrf" value="([^"]+)"', client.get("/login").text
                )
                client.post(
                    "/login",
                    data={"username": "ana", "password": "pw", "csrf": token.group(1)},
                )
                rng = random.Random(3)
                pages = {
                    "queue": lambda: "/",
                    "queue, filtered": lambda: (
                        "/?threat="
                        + rng.choice(THREATS)
                        + "&tactic="
                        + rng.choice(TACTICS)
                    ),
                    "queue, one user": lambda: (
                        f"/?state=all&user=user-{rng.randrange(2000)}"
                    ),
                    "incident": lambda: f"/incidents/{rng.choice(ids)}",
                }
                results = {}
                for name, url in pages.items():
                    client.get(url())  # warm
                    times = []
                    for _ in range(args.requests // len(pages)):
                        t = time.perf_counter()
                        r = client.get(url())
                        times.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200, r.text[:300]
                    times.sort()
                    results[name] = times
        finally:
            server.should_exit = True
            thread.join(10)
    print(
        f"\n{args.rows:,} gold rows, {args.incidents:,} incidents; ms per page over HTTP:"
    )
    print(f"{'page':<20}{'p50':>8}{'p95':>8}{'max':>8}")
    every = []
    for name, times in results.items():
        every += times
        p95 = times[int(0.95 * (len(times) - 1))]
        print(f"{name:<20}{statistics.median(times):>8.0f}{p95:>8.0f}{times[-1]:>8.0f}")
    every.sort()
    p95 = every[int(0.95 * (len(every) - 1))]
    print(
        f"target: p95 <= 300 ms over all pages: {'met' if p95 <= 300 else 'NOT met'} ({p95:.0f} ms)"
    )


def report_week(mix: str, result: dict, args) -> None:
    print(
        f"\n== {mix}: {args.days} days of {args.events_per_day:,} events, the analyst wrong "
        f"{args.wrong:.0%} of the time; false alerts per 10,000 normal events =="
    )
    print(
        f"{'day':<5}{'answers':>9}{'without':>10}{'with':>8}{'true sent':>11}{'true held':>11}"
    )
    for d in result["days"]:
        per = 10_000 / max(d["normal"], 1)
        print(
            f"{d['day']:<5}{d['answers']:>9}{d['called'] * per:>10.1f}{d['sent'] * per:>8.1f}"
            f"{d['true_sent']:>11}{d['lost']:>11}"
        )
    later = result["days"][1:]
    normal = sum(d["normal"] for d in later) or 1
    without = sum(d["called"] for d in later) * 10_000 / normal
    with_ = sum(d["sent"] for d in later) * 10_000 / normal
    lost = sum(d["lost"] for d in later)
    ratio = with_ / without if without else 0.0
    print(
        f"days 2-{args.days}: without feedback {without:.1f}, with {with_:.1f} "
        f"(ratio {ratio:.2f}; target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'}); "
        f"true alerts held back by the feedback: {lost} "
        f"({'met' if lost == 0 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
