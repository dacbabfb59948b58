"""Alert quality on both generator mixes, and produce -> alert latency on a warm server.

**Quality** (per mix, in-process runs): the champion is trained on one labelled stream
(seed 5); a held-out stream (seed 2026, 3 % anomalies) then goes through the whole
ingest_job selection in ``--batches`` batches, its alerts going to two local signed
webhooks: ``default`` (a route with the defaults: CRITICAL incidents, risk from ``high``)
and ``warning`` (``min_status: WARNING``). The rate limit is lifted so it does not decide
the figures. Per route, over the held-out stream (the first batch also scores the
training window and alerts on it; those alerts are not counted):

- alerts per incident: first alerts per alerted incident (target exactly 1) and updates;
- precision: first incident alerts whose incident holds a labelled attack event (>= 0.9);
- recall per type: labelled attack episodes with an event in an alerted incident (>= 0.9
  at the default routes);
- false alerts per 10,000 normal events.

**Latency** (``--latency``): `dagster dev` with the sensor on, runs attached to a warm Spark
Connect server; per round, the seconds from the start of a produce to the batch's rows in
gold_events_enriched (freshness, as bench_freshness.py) and to the first new alert at the
webhook. Target: alert <= freshness + 5 s.

    python bench/bench_alerts.py [--mix generator commuters] [--latency]
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
from _common import throwaway_services
from dagster import AssetKey, DagsterInstance, materialize
from deltalake import DeltaTable

from anomaly_assets.definitions import build_resources
from anomaly_assets.devtools.generator import EventGenerator, produce
from anomaly_assets.devtools.receivers import Receivers
from anomaly_assets.devtools.scenario import CommuterScenario
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.jobs import INGESTION_ASSETS
from anomaly_assets.pipeline import stream_parts
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.spark import SparkResource
from anomaly_assets.stream import Stream

MIXES = {"generator": EventGenerator, "commuters": CommuterScenario}
TRAIN = ["bronze_events", "bronze_quarantine", "bronze_offset_ledger", "silver_events"]
TRAIN += ["silver_user_profile"]
ROUTES = {"default": {}, "warning": {"min_status": "WARNING"}}
#: The labels held_out_run writes: the training stream's, then the held-out stream's (the
#: first held-out batch also scores the training window).
LABEL_FILES = ("train.csv", "eval.csv")
SECRET_ENV = "BENCH_ALERTS_HOOK_SECRET"


def alerts_section(hooks: dict[str, Receivers], rate_limit: int) -> dict:
    return {
        "channels": {
            name: {
                "type": "webhook",
                "url": f"{r.base}/hook",
                "secret_env": f"{SECRET_ENV}_{name.upper()}",
            }
            for name, r in hooks.items()
        },
        "routes": [{"channels": [name], **ROUTES[name]} for name in hooks],
        "rate_limit_per_hour": rate_limit,
    }


def held_out_run(mix_name: str, tmp: Path, args, alerts: dict, after_batch=None):
    """Train on a labelled stream, then run the held-out stream through the whole
    ingest_job selection in ``args.batches`` batches, ``after_batch(k)`` after each; returns
    the labels of both streams (anomalies only), the training stream's event ids and the
    seconds of the held-out batches. The first batch also scores the training window
    (gold starts empty), so some alerts and labels are the training stream's."""
    mix = MIXES[mix_name]
    stream = Stream(explainer="offline", alerts=alerts)
    assets = stream_parts(stream)["assets"]
    with (
        throwaway_services(tmp) as (bootstrap, mlflow),
        DagsterInstance.ephemeral() as instance,
    ):
        topic = f"bench-alerts-{mix_name}"
        spark = SparkResource(log_level="ERROR", driver_memory="6g")
        resources = build_resources(
            spark,
            lakehouse=LakehouseResource(root=str(tmp / "lake"), spark=spark),
            kafka=KafkaResource(bootstrap_servers=bootstrap, topic=topic),
            mlflow_settings=mlflow,
        )

        def run(keys, ops: dict) -> None:
            assert materialize(
                assets,
                resources=resources,
                instance=instance,
                selection=[AssetKey(k) for k in keys],
                run_config={"ops": ops},
            ).success

        quiet = {"log": lambda *_: None}
        train = mix(seed=5, population_seed=7, anomaly_rate=0.01)
        produce(
            bootstrap, topic, args.train_events, train, tmp / LABEL_FILES[0], 3, **quiet
        )
        run(TRAIN, {"bronze": {"config": {"max_events": args.train_events}}})
        trained = set(
            DeltaTable(str(tmp / "lake" / "silver_events"))
            .to_pyarrow_table(columns=["event_id"])["event_id"]
            .to_pylist()
        )
        run(
            ["anomaly_model"],
            {"anomaly_model": {"config": {"labels_path": str(tmp / LABEL_FILES[0])}}},
        )
        held_out = mix(
            seed=2026, population_seed=7, anomaly_rate=0.03, start=train.clock
        )
        produce(
            bootstrap,
            topic,
            args.eval_events,
            held_out,
            tmp / LABEL_FILES[1],
            3,
            **quiet,
        )
        per_batch = -(-args.eval_events // args.batches)
        t0 = time.perf_counter()
        for k in range(args.batches):
            run(INGESTION_ASSETS, {"bronze": {"config": {"max_events": per_batch}}})
            if after_batch is not None:
                after_batch(k)
        return anomaly_labels(tmp), trained, time.perf_counter() - t0


def anomaly_labels(tmp: Path) -> pd.DataFrame:
    """The labelled anomalies of both streams held_out_run produces (LABEL_FILES)."""
    both = pd.concat(pd.read_csv(tmp / f, dtype=str) for f in LABEL_FILES)
    return both[both["kind"] == "anomaly"]


def quality(mix_name: str, tmp: Path, args, monkey_env: dict) -> dict:
    """Per-route figures of a held-out run (module doc)."""
    hooks = {name: Receivers(tmp / f"receivers-{name}").start() for name in ROUTES}
    for name, r in hooks.items():
        monkey_env[f"{SECRET_ENV}_{name.upper()}"] = r.webhook_secret
    try:
        labelled, trained, seconds = held_out_run(
            mix_name, tmp, args, alerts_section(hooks, 100_000)
        )
        incidents = DeltaTable(str(tmp / "lake" / "gold_user_incidents")).to_pandas(
            columns=["incident_id", "user_id", "event_ids", "status"]
        )
        gold = DeltaTable(str(tmp / "lake" / "gold_anomaly_predictions")).to_pandas(
            columns=[
                "event_id",
                "user_id",
                "event_time",
                "anomaly_score",
                "severity_percentile",
                "status",
                "top_features",
            ]
        )
        if args.keep:  # the rows and alerts, to study without running again
            keep = Path(args.keep) / mix_name
            keep.mkdir(parents=True, exist_ok=True)
            incidents.to_parquet(keep / "incidents.parquet")
            labelled.to_csv(keep / "labels.csv", index=False)
            gold.to_parquet(keep / "gold.parquet")
            for name, r in hooks.items():
                (keep / f"alerts-{name}.json").write_text(
                    json.dumps(r.webhook_requests)
                )
        figures = {
            name: route_figures(r.webhook_requests, incidents, labelled, gold, trained)
            for name, r in hooks.items()
        }
        figures["seconds"] = seconds
        return figures
    finally:
        for r in hooks.values():
            r.stop()


def route_figures(requests, incidents, labelled, gold, trained: set) -> dict:
    """One route's figures from what its webhook received (see the module doc), over the
    held-out stream: the incidents with an event not in ``trained``, and its gold rows."""
    bodies = [r["body"] for r in requests]
    attack_events = set(labelled["event_id"])
    held = incidents[[not trained.issuperset(e) for e in incidents["event_ids"]]]
    events_of = dict(zip(held["incident_id"], held["event_ids"], strict=True))
    existing = set(incidents["incident_id"])
    first = Counter(
        b["incident_id"] for b in bodies if b["kind"] == "incident" and not b["update"]
    )
    updates = Counter(
        b["incident_id"] for b in bodies if b["kind"] == "incident" and b["update"]
    )
    known = [i for i in first if i in events_of]
    true = [i for i in known if attack_events & set(events_of[i])]
    alerted_events = {e for i in known for e in events_of[i]}
    scored = gold[~gold["event_id"].isin(trained)]["event_id"]
    normal = len(scored) - scored.isin(attack_events).sum()
    recall = {}
    held_labels = labelled[labelled["event_id"].isin(set(scored))]
    for label, episodes in held_labels.groupby("label"):
        hit = episodes.groupby("episode_id")["event_id"].apply(
            lambda ids: bool(set(ids) & alerted_events)
        )
        recall[label] = (hit.mean(), len(hit))
    return {
        "incident_alerts": len(known),
        "max_first_per_incident": max((first[i] for i in known), default=0),
        "updates_per_incident": sum(updates[i] for i in known) / max(len(known), 1),
        "gone": sum(i not in existing for i in first),
        "precision": len(true) / max(len(known), 1),
        "false_per_10k": (len(known) - len(true)) / max(normal, 1) * 10_000,
        "risk_alerts": sum(b["kind"] == "risk" for b in bodies),
        "resolves": sum(b["kind"] == "resolve" for b in bodies),
        "recall": recall,
        "normal_events": normal,
    }


def latency(tmp: Path, args) -> list[tuple[float, float]]:
    """(freshness, alert) seconds per round on a warm `dagster dev` (module doc)."""
    from bench_freshness import RUN_TIMES

    from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
    from anomaly_assets.devtools.dagster_dev import DagsterDev, wait_for_sensor_offsets
    from anomaly_assets.devtools.spark_connect import LocalSparkConnectServer

    hook = Receivers(tmp / "receivers-latency").start()
    (tmp / "alerts.yaml").write_text(
        "channels:\n"
        f"  hook: {{type: webhook, url: '{hook.base}/hook', secret_env: HOOK}}\n"
        "routes: [{channels: [hook], min_status: WARNING}]\n"
        "rate_limit_per_hour: 100000\n"
    )
    broker = LocalKafkaBroker(
        port=free_port(), controller_port=free_port(), data_dir=tmp / "kafka-latency"
    ).start()
    server = LocalSparkConnectServer(port=free_port(), work_dir=tmp / "connect")
    topic, bootstrap = "bench-alerts-latency", broker.bootstrap_servers
    env = {
        "ANOMALY_LAKEHOUSE_ROOT": str(tmp / "latency" / "lake"),
        "ANOMALY_LOCAL_DIR": str(tmp / "latency" / "local"),
        "ANOMALY_KAFKA_BOOTSTRAP": bootstrap,
        "ANOMALY_KAFKA_TOPIC": topic,
        "ANOMALY_SENSOR_DEFAULT": "running",
        "ANOMALY_SENSOR_INTERVAL_S": str(args.interval),
        "ANOMALY_ALERTS_FILE": str(tmp / "alerts.yaml"),
        "HOOK": hook.webhook_secret,
    }
    dev = DagsterDev(tmp / "latency" / "home", env, tmp / "latency" / "dagster_dev.log")
    gen = EventGenerator(seed=31, n_users=120, anomaly_rate=0.05)
    quiet = {"log": lambda *_: None}
    out = []
    try:
        server.start()
        env["ANOMALY_SPARK_REMOTE"] = server.url
        dev.start()
        produce(bootstrap, topic, 3000, gen, None, 2, **quiet)
        total = 3000
        seen = {r["runId"] for r in wait_for_sensor_offsets(dev, total)}
        time.sleep(5)  # the cold start's alerts are in
        for i in range(args.rounds):
            before = len(hook.webhook_requests)
            t0 = time.time()
            produce(bootstrap, topic, args.round_events, gen, None, 2, **quiet)
            total += args.round_events
            alert_at = None
            while alert_at is None:
                if len(hook.webhook_requests) > before:
                    alert_at = time.time()
                assert time.time() - t0 < 300, dev.log_tail()
                time.sleep(0.05)
            new = [
                r for r in wait_for_sensor_offsets(dev, total) if r["runId"] not in seen
            ]
            seen |= {r["runId"] for r in new}
            times = [dev.gql(RUN_TIMES, {"id": r["runId"]}) for r in new]
            landed = min(
                int(e["timestamp"]) / 1000
                for t in times
                for e in t["logsForRun"]["events"]
                if e and e.get("assetKey", {}).get("path") == ["gold_events_enriched"]
            )
            out.append((landed - t0, alert_at - t0))
            steps = sorted(
                (s["startTime"] - t0, s["endTime"] - s["startTime"], s["stepKey"])
                for s in times[0]["runOrError"]["stepStats"]
                if s["startTime"] and s["endTime"]
            )
            print(
                f"latency round {i + 1}: {args.round_events:,} events -> "
                f"gold_events_enriched {out[-1][0]:.1f} s, first alert {out[-1][1]:.1f} s"
                "; steps (start, seconds): "
                + ", ".join(f"{k} {a:.0f}+{d:.1f}" for a, d, k in steps)
            )
    finally:
        dev.stop()
        server.stop()
        broker.stop()
        hook.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", nargs="*", choices=list(MIXES), default=list(MIXES))
    parser.add_argument("--train-events", type=int, default=30_000)
    parser.add_argument("--eval-events", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--keep", help="folder to keep the rows and alerts in")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-events", type=int, default=2_000)
    parser.add_argument("--interval", type=int, default=5)
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_alerts_") as tmp:
        for mix in args.mix:
            results[mix] = quality(mix, Path(tmp) / mix, args, os.environ)
        rounds = latency(Path(tmp), args) if args.latency else []

    for mix, figures in results.items():
        print(
            f"\n== {mix}: {args.eval_events:,} held-out events (3 % anomalies) in "
            f"{args.batches} batches, {figures['seconds']:.0f} s; trained on "
            f"{args.train_events:,} =="
        )
        print(f"{'':34}" + "".join(f"{name:>16}" for name in ROUTES))

        def row(label, fmt, figures=figures):
            print(f"{label:34}" + "".join(f"{fmt(figures[n]):>16}" for n in ROUTES))

        row("incident alerts", lambda f: f"{f['incident_alerts']}")
        row(
            "first alerts per incident (max)",
            lambda f: f"{f['max_first_per_incident']}",
        )
        row(
            "updates per alerted incident", lambda f: f"{f['updates_per_incident']:.2f}"
        )
        row("alerted incidents since gone", lambda f: f"{f['gone']}")
        row("precision (>= 0.9)", lambda f: f"{f['precision']:.3f}")
        row("false alerts / 10k normal", lambda f: f"{f['false_per_10k']:.2f}")
        row("risk alerts / resolves", lambda f: f"{f['risk_alerts']} / {f['resolves']}")
        types = sorted({t for n in ROUTES for t in figures[n]["recall"]})
        for t in types:
            row(
                f"recall {t}",
                lambda f, t=t: "{:.3f} ({})".format(*f["recall"].get(t, (0.0, 0))),
            )
        default = figures["default"]
        weak = [t for t, (r, _) in default["recall"].items() if r < 0.9]
        print(
            f"targets: one first alert per incident "
            f"({'met' if all(figures[n]['max_first_per_incident'] <= 1 for n in ROUTES) else 'NOT met'}); "
            f"precision >= 0.9 ({'met' if default['precision'] >= 0.9 else 'NOT met'}); "
            f"recall >= 0.9 per type at the default route "
            f"({'met' if not weak else 'NOT met for ' + ', '.join(weak)})"
        )
    if rounds:
        fresh = statistics.median(r[0] for r in rounds)
        alert = statistics.median(r[1] for r in rounds)
        print(
            f"\nproduce -> gold_events_enriched median {fresh:.1f} s, -> first alert "
            f"median {alert:.1f} s; target alert <= freshness + 5 s: "
            f"{'met' if alert <= fresh + 5 else 'NOT met'} ({alert - fresh:+.1f} s)"
        )


if __name__ == "__main__":
    main()
