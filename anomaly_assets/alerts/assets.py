"""alert_outbox: the alerts the incidents and user risk call for, written before they are
sent and marked when delivered (alerts/outbox.py).

Reads the incident commits since its cursor (deletes too: a vanished incident resolves
its PagerDuty incident), the changed users' risk, what the outbox already holds for them
and, for the content, the best grounded explanation among each incident's events. A stream
without channels has nothing to do and costs no Spark work.
"""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from anomaly_assets.alerts import outbox
from anomaly_assets.alerts.channels import find_sent_slack, send
from anomaly_assets.alerts.content import asset_url, record, trace_url
from anomaly_assets.alerts.settings import AlertsSpec, SlackChannel
from anomaly_assets.alerts.triggers import (
    incident_candidates,
    resolve_candidates,
    risk_candidates,
    route,
)
from anomaly_assets.core import cursors
from anomaly_assets.core.delta_sql import literal
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

CONSUMER = "alert_outbox"
#: The default stream's alerts: a YAML file with what a stream's alerts: section holds.
ALERTS_FILE_ENV = "ANOMALY_ALERTS_FILE"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INCIDENT_FACTS = (
    "incident_id",
    "user_id",
    "first_seen",
    "last_seen",
    "event_count",
    "event_ids",
    "event_types",
    "top_features",
    "status",
    "threat_types",
    "attack_techniques",
)


class AlertConfig(Config):
    first_run_hours: float = Field(
        default=24.0,
        gt=0,
        description="A first run (no cursor yet: alerts just switched on) alerts only "
        "incidents seen in this many hours before the newest, not the whole history.",
    )
    risk_window_days: float = Field(
        default=30.0,
        gt=0,
        description="A risk level alerted for a user is not alerted again within this "
        "many days (the risk window).",
    )


def alerts_spec(stream: Stream) -> AlertsSpec:
    """The stream's alerts section, or for a stream without one the file
    ANOMALY_ALERTS_FILE names, or no channels."""
    if stream.alerts:
        return AlertsSpec.model_validate(dict(stream.alerts))
    path = os.environ.get(ALERTS_FILE_ENV)
    if path:
        return AlertsSpec.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    return AlertsSpec()


def build_alert_outbox(stream: Stream = DEFAULT_STREAM):
    @asset(
        key=stream.key("alert_outbox"),
        deps=[
            stream.key("gold_user_incidents"),
            stream.key("gold_user_risk"),
            stream.key("gold_events_enriched"),
        ],
        description="Every alert the incidents and user risk called for, per channel: "
        "its idempotency key, content, and what became of it (delivered, retried, "
        "failed, or suppressed, snoozed, rate-limited with the reason). Written before "
        "sending, so an alert reaches a channel once per incident state.",
        group_name=stream.group("alerts"),
        kinds={"spark", "delta"},
        tags={"layer": "alerts"},
        owners=["team:ml-platform"],
        pool=stream.pool("alert_outbox"),
    )
    def alert_outbox(
        context: AssetExecutionContext,
        config: AlertConfig,
        lakehouse: LakehouseResource,
    ) -> MaterializeResult:
        spec = alerts_spec(stream)
        if not spec.channels:
            context.log.info("No alert channel configured: nothing to send.")
            return MaterializeResult(metadata={"channels": 0})
        meta = raise_alerts(context, config, stream.lakehouse(lakehouse), stream, spec)
        return MaterializeResult(metadata=meta)

    return alert_outbox


def _utc(micros) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _collect(df, time_columns=("first_seen", "last_seen", "as_of")) -> list[dict]:
    """Rows as dicts, the given timestamp columns as UTC datetimes (not the process's
    local time that collect() would give)."""
    from pyspark.sql import functions as F

    present = [c for c in time_columns if c in df.columns]
    rows = df.withColumns({c: F.unix_micros(c) for c in present}).collect()
    return [
        {
            **r.asDict(recursive=True),
            **{c: None if r[c] is None else _utc(r[c]) for c in present},
        }
        for r in rows
    ]


def changed_incidents(pending, first_run_hours: float):
    """(incidents changed, incidents gone) since the cursor; a first run keeps only the
    recent ones."""
    latest = cursors.latest_per_key(pending.changes, ["incident_id"])
    rows = _collect(latest.select(*INCIDENT_FACTS, "_change_type"))
    present = [r for r in rows if r["_change_type"] != "delete"]
    gone = [r for r in rows if r["_change_type"] == "delete"]
    if pending.cursor.version is None and present:
        since = max(r["last_seen"] for r in present) - timedelta(hours=first_run_hours)
        present = [r for r in present if r["last_seen"] >= since]
    return present, gone


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(literal(v) for v in values) or 'NULL'})"


def raise_alerts(
    context, config: AlertConfig, lakehouse, stream: Stream, spec, now=None
) -> dict:
    """Record the alerts the incident changes since the cursor call for, then send what is
    due; ``now`` (tests) is the run's time."""
    spark = lakehouse.spark_session
    now = now or datetime.now(UTC)
    path = lakehouse.path(CONSUMER)
    pending = lakehouse.pending_changes(
        CONSUMER, "gold_user_incidents", kinds=("insert", "update_postimage", "delete")
    )
    if pending.through is None:
        raise FileNotFoundError(
            "gold_user_incidents does not exist yet: materialise it first."
        )
    raised: dict[str, int] = {}
    if pending.changes is not None:
        new_rows = _new_alerts(context, config, lakehouse, stream, spec, pending, now)
        outbox.insert_new(spark, path, new_rows)
        for r in new_rows:
            raised[r["status"]] = raised.get(r["status"], 0) + 1
    delivered = deliver(context, spark, lakehouse.read(CONSUMER), path, spec, now)
    lakehouse.save_cursor(CONSUMER, "gold_user_incidents", pending.through)
    return {
        "incidents_version": pending.through,
        "alerts_raised": MetadataValue.json(raised),
        "alerts_sent": MetadataValue.json(delivered),
        "channels": len(spec.channels),
    }


def _new_alerts(context, config, lakehouse, stream, spec, pending, now) -> list[dict]:
    present, gone = changed_incidents(pending, config.first_run_hours)
    if not present and not gone:
        return []
    users = sorted({r["user_id"] for r in present})
    risk_table = lakehouse.read("gold_user_risk")
    risks = (
        []
        if risk_table is None or not users
        else _collect(risk_table.filter(_in("user_id", users)))
    )
    subjects = [r["incident_id"] for r in present + gone] + users
    box = lakehouse.read(CONSUMER)
    prior = [] if box is None else outbox.rows_where(box, _in("subject", subjects))
    alerted: dict[str, list[str]] = {}
    risk_alerted: dict[str, list] = {}
    triggered = {}
    for row in sorted(prior, key=lambda r: r["created_at"]):
        if row["kind"] == "incident":
            alerted.setdefault(row["subject"], []).append(row["state"])
            if row["channel_type"] == "pagerduty":
                triggered.setdefault(row["subject"], row)
        elif row["kind"] == "risk":
            level, as_of = row["state"].split(":", 2)[1:]
            risk_alerted.setdefault(row["subject"], []).append(
                (level, datetime.fromisoformat(as_of))
            )
    if any(s.networks for s in spec.suppressions):
        _add_networks(lakehouse, present)
    candidates = [
        *incident_candidates(present, alerted),
        *risk_candidates(risks, risk_alerted, config.risk_window_days),
        *resolve_candidates(gone, triggered),
    ]
    hour = (
        []
        if box is None
        else outbox.rows_where(
            box,
            f"created_at > {_ts(now - timedelta(hours=1))} AND status IN "
            "('pending', 'sending', 'retry', 'delivered')",
        )
    )
    sent_last_hour: dict[str, int] = {}
    for row in hour:
        sent_last_hour[row["channel"]] = sent_last_hour.get(row["channel"], 0) + 1
    routed = route(spec, stream.name, candidates, sent_last_hour, now)
    explanations = _explanations(lakehouse, present) if routed else {}
    risk_by_user = {r["user_id"]: r for r in risks}
    links = {
        "Incidents": asset_url(
            spec.dagster_url, stream.key("gold_user_incidents").path
        ),
        "User risk": asset_url(spec.dagster_url, stream.key("gold_user_risk").path),
    }
    rows = []
    for r in routed:
        c = r.candidate
        explanation = explanations.get(c.subject) if c.kind == "incident" else None
        trace = trace_url(spec.mlflow_url, (explanation or {}).get("trace_id"))
        content = record(
            c.kind,
            c.facts,
            risk_by_user.get(c.user_id),
            explanation,
            {**links, "MLflow trace": trace},
            update=r.update_of is not None,
        )
        rows.append(
            {
                "key": r.key,
                "channel": r.channel,
                "channel_type": spec.channels[r.channel].type,
                "kind": c.kind,
                "subject": c.subject,
                "incident_id": c.subject if c.kind != "risk" else None,
                "user_id": c.user_id,
                "state": c.state,
                "update_of": r.update_of,
                "status": r.status,
                "reason": r.reason,
                "attempts": 0,
                "next_attempt_at": now,
                "content": json.dumps(content, sort_keys=True, default=str),
                "created_at": now,
                "updated_at": now,
            }
        )
    context.log.info(
        f"{len(present)} incident(s) changed, {len(gone)} gone: {len(candidates)} "
        f"alert(s) called for, {len(rows)} channel row(s)"
    )
    return rows


def _ts(t: datetime) -> str:
    return f"TIMESTAMP'{t.isoformat()}'"


def _add_networks(lakehouse, incidents: list[dict]) -> None:
    """Each incident's ``networks``: the IP addresses of its events (silver)."""
    from pyspark.sql import functions as F

    ids = sorted({e for i in incidents for e in i["event_ids"]})
    silver = lakehouse.read("silver_events")
    if silver is None or not ids:
        return
    rows = silver.filter(F.col("event_id").isin(ids)).select("event_id", "ip_address")
    ip_of = {r["event_id"]: r["ip_address"] for r in rows.collect()}
    for incident in incidents:
        incident["networks"] = sorted(
            {ip_of[e] for e in incident["event_ids"] if ip_of.get(e)}
        )


def _explanations(lakehouse, incidents: list[dict]) -> dict[str, dict]:
    """Per incident, the explanation of its most severe event that got a grounded one."""
    from pyspark.sql import functions as F

    enriched = lakehouse.read("gold_events_enriched")
    owner = {e: i["incident_id"] for i in incidents for e in i["event_ids"]}
    if enriched is None or not owner:
        return {}
    rows = (
        enriched.filter(F.col("event_id").isin(sorted(owner)))
        .filter(F.col("enrichment_status").isin("ok", "cached"))
        .select(
            "event_id",
            "severity_percentile",
            "summary",
            "recommended_action",
            "trace_id",
        )
        .collect()
    )
    best: dict[str, dict] = {}
    for r in sorted(
        rows, key=lambda r: (-(r["severity_percentile"] or 0), r["event_id"])
    ):
        best.setdefault(owner[r["event_id"]], r.asDict())
    return best


def deliver(context, spark, box, path: str, spec: AlertsSpec, now: datetime) -> dict:
    """Send the due alerts (new, due a retry, or left ``sending`` by a killed run) and
    record what became of each; returns the count per outcome."""
    if box is None:
        return {}
    due = outbox.rows_where(
        box,
        f"status IN {tuple(outbox.DUE)} AND next_attempt_at <= {_ts(now)}",
    )
    if not due:
        return {}
    due.sort(key=lambda r: (r["channel"], r["created_at"], r["key"]))
    parents = {
        r["key"]: r
        for r in outbox.rows_where(
            box, _in("key", sorted({d["update_of"] for d in due if d["update_of"]}))
        )
    }
    marked = [
        d
        if d["status"] == "sending"
        else {
            **d,
            "status": "sending",
            "attempts": d["attempts"] + 1,
            "updated_at": now,
        }
        for d in due
    ]
    outbox.update(spark, path, [m for m, d in zip(marked, due) if m is not d])
    results, counts = [], {}
    for row, was in zip(marked, due):
        result = _send_one(spec, row, parents, was["status"] == "sending", now)
        results.append({**row, **result, "updated_at": now})
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    outbox.update(spark, path, results)
    context.log.info(f"Sent {len(due)} alert(s): {counts}")
    return counts


def _send_one(
    spec: AlertsSpec, row: dict, parents: dict, recovering: bool, now: datetime
) -> dict:
    channel = spec.channels.get(row["channel"])
    if channel is None:
        return {"status": "failed", "last_error": "channel no longer configured"}
    if recovering and isinstance(channel, SlackChannel):
        since = (row["created_at"] - timedelta(minutes=5)).timestamp()
        found = find_sent_slack(channel, row["key"], since)
        if found:
            return {"status": "delivered", "receiver_ref": found, "delivered_at": now}
    parent = parents.get(row["update_of"]) if row["update_of"] else None
    delivery = send(
        channel,
        row["key"],
        json.loads(row["content"]),
        parent["receiver_ref"] if parent else None,
        row["update_of"],
    )
    if delivery.ok:
        return {
            "status": "delivered",
            "receiver_ref": delivery.ref,
            "delivered_at": now,
            "last_error": None,
        }
    spent = row["attempts"] >= spec.max_attempts or not delivery.retryable
    return {
        "status": "failed" if spent else "retry",
        "last_error": delivery.error,
        "next_attempt_at": now + outbox.backoff(row["attempts"]),
    }


alert_outbox = build_alert_outbox()
