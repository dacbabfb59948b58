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
from anomaly_assets.alerts.channels import Delivery, find_sent_slack, send
from anomaly_assets.alerts.content import asset_url, record, trace_url
from anomaly_assets.alerts.settings import (
    AlertsSpec,
    SlackChannel,
    Snooze,
)
from anomaly_assets.alerts.triggers import (
    incident_candidates,
    resolve_candidates,
    risk_candidates,
    route,
)
from anomaly_assets.core import cursors, delta_sql, priority
from anomaly_assets.core.pruning import days_between, days_predicate
from anomaly_assets.core.verdicts import closing_answers
from anomaly_assets.enrichment.redaction import mask_text
from anomaly_assets.feedback import patterns, precision, suppression
from anomaly_assets.feedback import store as feedback
from anomaly_assets.gold.risk import RiskWindow
from anomaly_assets.io_managers.delta import delta_table_metadata
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

CONSUMER = "alert_outbox"
#: Snoozes recorded by ``anomaly-alerts snooze`` (alerts/cli.py), beside the spec's.
SNOOZE_TABLE = "alert_snoozes"
#: The default stream's alerts: a YAML file with what a stream's alerts: section holds.
ALERTS_FILE_ENV = "ANOMALY_ALERTS_FILE"
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
    "max_severity",
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
        default=RiskWindow.window_days,
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
    return load_alerts_file(path) if path else AlertsSpec()


def load_alerts_file(path: str) -> AlertsSpec:
    """A YAML file holding an alerts section, or a stream's defs.yaml (its
    ``attributes.alerts``)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if "attributes" in data:
        data = data["attributes"].get("alerts") or {}
    return AlertsSpec.model_validate(data)


def build_alert_outbox(stream: Stream = DEFAULT_STREAM):
    @asset(
        key=stream.key("alert_outbox"),
        deps=[
            stream.key("gold_user_incidents"),
            stream.key("gold_user_risk"),
            stream.key("gold_events_enriched"),
            stream.key(feedback.TABLE),
        ],
        description="Every alert the incidents and user risk called for, per channel: "
        "its idempotency key, content, and what became of it (delivered, retried, "
        "failed, or suppressed, snoozed, rate-limited with the reason). Written before "
        "sending, so an alert reaches a channel once per incident state.",
        group_name=stream.group("alerts"),
        kinds={"spark", "delta"},
        tags={"layer": "alerts"},
        owners=["team:ml-platform"],
        op_tags=priority.AFTER_ROWS,
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


def changed_incidents(pending, first_run_hours: float):
    """(incidents changed, incidents gone) since the cursor; a first run keeps only the
    recent ones."""
    latest = cursors.latest_per_key(pending.changes, ["incident_id"])
    rows = delta_sql.collect_utc(
        latest.select(*INCIDENT_FACTS, "_change_type"), ["first_seen", "last_seen"]
    )
    present = [r for r in rows if r["_change_type"] != "delete"]
    gone = [r for r in rows if r["_change_type"] == "delete"]
    if pending.cursor.version is None and present:
        since = max(r["last_seen"] for r in present) - timedelta(hours=first_run_hours)
        present = [r for r in present if r["last_seen"] >= since]
    return present, gone


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
    before = delta_sql.version(spark, path)
    raised: dict[str, int] = {}
    if pending.changes is not None:
        new_rows, changed = _new_alerts(
            context, config, lakehouse, stream, spec, pending, now
        )
        outbox.insert_new(spark, path, new_rows)
        outbox.update(spark, path, changed)
        for r in new_rows + changed:
            raised[r["status"]] = raised.get(r["status"], 0) + 1
    delivered = deliver(context, spark, lakehouse.read(CONSUMER), path, spec, now)
    written = (
        delta_table_metadata(spark, path, before)
        if delta_sql.version(spark, path) != before
        else {}
    )
    lakehouse.save_cursor(CONSUMER, "gold_user_incidents", pending.through)
    return {
        **written,
        "incidents_version": pending.through,
        "alerts_raised": MetadataValue.json(raised),
        "alerts_sent": MetadataValue.json(delivered),
        "channels": len(spec.channels),
    }


def _new_alerts(context, config, lakehouse, stream, spec, pending, now):
    """(outbox rows to insert, existing rows to change): the alerts the changed incidents
    and their users' risk call for, routed and checked against what the outbox holds."""
    present, gone = changed_incidents(pending, config.first_run_hours)
    if not present and not gone:
        return [], []
    users = sorted({r["user_id"] for r in present})
    risk_table = lakehouse.read("gold_user_risk")
    risks = (
        []
        if risk_table is None or not users
        else delta_sql.collect_utc(
            risk_table.filter(delta_sql.in_list("user_id", users)), ["as_of"]
        )
    )
    subjects = [r["incident_id"] for r in present + gone] + users
    box = lakehouse.read(CONSUMER)
    prior = (
        []
        if box is None
        else outbox.rows_where(box, delta_sql.in_list("subject", subjects))
    )
    history = outbox.History.of(prior)
    spec = spec.model_copy(
        update={
            "snoozes": [*spec.snoozes, *recorded_snoozes(lakehouse, now)],
        }
    )
    if any(s.networks for s in spec.suppressions):
        _add_networks(lakehouse, present)
    candidates = [
        *incident_candidates(present, history.alerted),
        *risk_candidates(risks, history.risk_alerted, config.risk_window_days),
        *resolve_candidates(gone, history.triggered),
    ]
    busy = (
        []
        if box is None
        else outbox.rows_where(
            box,
            f"status IN ('pending', 'sending', 'retry') OR (status = 'delivered' AND "
            f"delivered_at > {_ts(now - timedelta(hours=1))})",
        )
    )
    sent_last_hour: dict[str, int] = {}
    for row in busy:
        sent_last_hour[row["channel"]] = sent_last_hour.get(row["channel"], 0) + 1
    answers = closing_answers(lakehouse)
    changed_users = set(users)
    tuned = {
        t.threat_type: t
        for t in (
            precision.from_answers(answers, now, spec.tuning)
            if spec.tuning.enabled
            else ()
        )
        if t.threshold is not None
    }
    routed = route(
        spec,
        stream.name,
        candidates,
        sent_last_hour,
        now,
        history.sent,
        tuned,
        [
            d
            for d in suppression.active_dismissals(answers, now)
            if d.user_id in changed_users
        ],
        patterns.learn(answers, now, spec.learning),
    )
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
    new, changed = history.split(rows, gone, now)
    context.log.info(
        f"{len(present)} incident(s) changed, {len(gone)} gone: {len(candidates)} "
        f"alert(s) called for, {len(new)} new outbox row(s), {len(changed)} changed"
    )
    return new, changed


def recorded_snoozes(lakehouse, now: datetime) -> list[Snooze]:
    """The running snoozes ``anomaly-alerts snooze`` recorded (alert_snoozes)."""
    table = lakehouse.read(SNOOZE_TABLE)
    if table is None:
        return []
    rows = delta_sql.collect_utc(table.filter(f"until > {_ts(now)}"), ["until"])
    return [
        Snooze(
            until=r["until"],
            users=r["users"] or [],
            threat_types=r["threat_types"] or [],
            reason=r["reason"] or "",
        )
        for r in rows
    ]


def _ts(t: datetime) -> str:
    return f"TIMESTAMP'{t.isoformat()}'"


def incident_days(incidents: list[dict]) -> set:
    """The UTC days the incidents' events fall on (their tables are read by day)."""
    return {
        d
        for i in incidents
        for d in days_between(i["first_seen"].date(), i["last_seen"].date())
    }


def _add_networks(lakehouse, incidents: list[dict]) -> None:
    """Each incident's ``networks``: the IP addresses of its events (silver)."""
    from pyspark.sql import functions as F

    ids = sorted({e for i in incidents for e in i["event_ids"]})
    silver = lakehouse.read("silver_events")
    if silver is None or not ids:
        return
    rows = (
        silver.filter(days_predicate("event_time", incident_days(incidents)))
        .filter(F.col("event_id").isin(ids))
        .select("event_id", "ip_address")
    )
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
        enriched.filter(days_predicate("event_time", incident_days(incidents)))
        .filter(F.col("event_id").isin(sorted(owner)))
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
    # first alerts before their updates, so an update finds its thread
    due.sort(key=lambda r: (r["created_at"], r["update_of"] is not None, r["key"]))
    parents = {
        r["key"]: r
        for r in outbox.rows_where(
            box,
            delta_sql.in_list(
                "key", sorted({d["update_of"] for d in due if d["update_of"]})
            ),
        )
    }
    # every attempt counts, a killed run's too, so a row that keeps killing its run
    # still runs out of attempts
    marked = [
        {**d, "status": "sending", "attempts": d["attempts"] + 1, "updated_at": now}
        for d in due
    ]
    outbox.update(spark, path, marked)
    results, counts = [], {}
    try:
        for row, was in zip(marked, due):
            result = _send_one(spec, row, parents, was, now)
            results.append({**row, **result, "updated_at": now})
            parents[row["key"]] = results[-1]
            counts[result["status"]] = counts.get(result["status"], 0) + 1
    finally:  # whatever happens to the run, what was sent is recorded
        outbox.update(spark, path, results)
    context.log.info(f"Sent {len(due)} alert(s): {counts}")
    return counts


def _send_one(
    spec: AlertsSpec, row: dict, parents: dict, was: dict, now: datetime
) -> dict:
    channel = spec.channels.get(row["channel"])
    if channel is None:
        return {"status": "failed", "last_error": "channel no longer configured"}
    parent = parents.get(row["update_of"]) if row["update_of"] else None
    thread = parent["receiver_ref"] if parent else None
    try:
        # tried before (a killed run, an answer that never came): ask Slack first
        if isinstance(channel, SlackChannel) and (
            was["status"] == "sending" or was["attempts"] > 0
        ):
            since = (row["created_at"] - timedelta(minutes=5)).timestamp()
            found = find_sent_slack(channel, row["key"], since, thread)
            if found:
                return {
                    "status": "delivered",
                    "receiver_ref": found,
                    "delivered_at": now,
                }
        delivery = send(
            channel, row["key"], json.loads(row["content"]), thread, row["update_of"]
        )
    except Exception as exc:  # noqa: BLE001 - one alert's failure is its row's, not the run's
        delivery = Delivery(
            False, True, f"{type(exc).__name__}: {mask_text(str(exc))}"[:200]
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
