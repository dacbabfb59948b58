"""Operations alerts: a failed run (a failed blocking check fails its run) or a gold table
gone stale reaches the stream's ``operations`` channels, through Dagster's own parts.

- Freshness: the gold tables carry a ``FreshnessPolicy``; Dagster's freshness daemon
  evaluates it and records each state change.
- A ``run_failure_sensor`` watches the stream's runs, and a sensor follows the freshness
  states (FAIL, then back to PASS).
- Both only *request* a run of ``<stream>__operations_alert_job``, one per channel, keyed
  by what happened. Dagster starts a run key once, so a sensor tick evaluated twice sends
  nothing twice. The send itself retries with backoff (the op's ``RetryPolicy``) through a
  receiver's outage, with the alert's key as the idempotency key where the API takes one.
"""

import json
import time
from datetime import timedelta

from dagster import (
    AssetCheckSeverity,
    AssetsDefinition,
    Backoff,
    Config,
    DefaultSensorStatus,
    Failure,
    FreshnessPolicy,
    Jitter,
    OpExecutionContext,
    RetryPolicy,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    apply_freshness_policy,
    job,
    op,
    run_failure_sensor,
    sensor,
)
from dagster._core.events import DagsterEventType
from pydantic import Field

from anomaly_assets.alerts.assets import alerts_spec
from anomaly_assets.alerts.channels import find_sent_slack, send
from anomaly_assets.alerts.content import (
    OPERATIONS,
    OPERATIONS_RESOLVED,
    asset_url,
    operations_record,
)
from anomaly_assets.alerts.settings import AlertsSpec, Operations, SlackChannel
from anomaly_assets.stream import Stream

#: The gold tables every batch refreshes: their staleness is the stream's.
FRESH_TABLES = ("gold_anomaly_predictions", "gold_events_enriched")
#: How often the operations sensors look (a failed run waits at most this long).
INTERVAL_S = 15
RUN_TAG = "anomaly_assets/operations_alert"


class OperationsAlert(Config):
    channel: str = Field(description="The operations channel to send to.")
    key: str = Field(description="The alert's idempotency key.")
    content: str = Field(description="What the alert says (JSON; content.py).")


def freshness_policy(operations: Operations) -> FreshnessPolicy | None:
    if operations.stale_after_minutes is None:
        return None
    warn = operations.warn_after_minutes
    return FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=operations.stale_after_minutes),
        warn_window=timedelta(minutes=warn) if warn else None,
    )


def with_freshness(stream: Stream, assets: list) -> list:
    """``assets`` with the stream's freshness policy on its FRESH_TABLES."""
    policy = freshness_policy(alerts_spec(stream).operations)
    if policy is None:
        return assets
    keys = {stream.key(t) for t in FRESH_TABLES}
    return [
        a.map_asset_specs(
            lambda s: apply_freshness_policy(s, policy) if s.key in keys else s
        )
        if isinstance(a, AssetsDefinition) and keys & set(a.keys)
        else a
        for a in assets
    ]


def failed_run_content(
    stream: Stream, spec: AlertsSpec, context: RunFailureSensorContext
) -> dict:
    """What a failed run says: its job, the failed blocking checks, each failed step's
    first error line."""
    run = context.dagster_run
    records = context.instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    failed_checks = []
    for r in records:
        evaluation = r.event_log_entry.dagster_event.event_specific_data
        # the ones that failed the run: blocking, with ERROR severity
        if (
            not evaluation.passed
            and evaluation.blocking
            and evaluation.severity == AssetCheckSeverity.ERROR
        ):
            failed_checks.append(
                f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
                + (f" ({evaluation.description})" if evaluation.description else "")
            )
    steps = [
        (e.step_key, _first_line(e.event_specific_data.error.message))
        for e in context.get_step_failure_events()
        if e.event_specific_data and e.event_specific_data.error
    ]
    if failed_checks:
        headline = f"Blocking check failed: {failed_checks[0].split(' (')[0]}"
    else:
        headline = f"Run failed: {run.job_name}"
    details = [("Job", run.job_name), ("Run", run.run_id)]
    details += [("Failed blocking check", c) for c in failed_checks]
    details += [(f"Step {key}", message) for key, message in steps]
    base = spec.dagster_url.rstrip("/")
    return operations_record(
        OPERATIONS,
        f"{headline} ({stream.name or 'default stream'})",
        "CRITICAL",
        _first_line(context.failure_event.message or "the run failed"),
        details,
        {"Dagster run": f"{base}/runs/{run.run_id}"},
        f"run-failure-{run.run_id}",
    )


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def freshness_content(
    stream: Stream, spec: AlertsSpec, instance, key, state: str
) -> dict:
    """A gold table gone stale (or fresh again): when it was last written, and the
    stream's last ingestion run, which tells a stalled pipeline from a quiet topic."""
    table = key.to_user_string()
    window = spec.operations.stale_after_minutes
    last = instance.get_latest_materialization_event(key)
    written = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last.timestamp))
        if last
        else "never"
    )
    runs = instance.get_run_records(RunsFilter(tags=stream.lane), limit=1)
    details = [("Table", table), ("Last written", written)]
    if runs:
        run = runs[0].dagster_run
        details.append(("Last ingestion run", f"{run.run_id} {run.status.value}"))
    stale = state == "FAIL"
    return operations_record(
        OPERATIONS if stale else OPERATIONS_RESOLVED,
        f"{'Stale' if stale else 'Fresh again'}: {table}",
        "WARNING" if stale else "OK",
        f"{table} was not refreshed for more than {window} min (its freshness policy)"
        if stale
        else f"{table} is refreshed again within {window} min",
        details,
        {"Dagster asset": asset_url(spec.dagster_url, tuple(key.path))},
        f"stale-{table}",
    )


def requests(spec: AlertsSpec, key: str, content: dict) -> list[RunRequest]:
    """One run of the alert job per operations channel, keyed so it starts once."""
    return [
        RunRequest(
            run_key=f"{key}:{channel}",
            run_config={
                "ops": {
                    "send_operations_alert": {
                        "config": {
                            "channel": channel,
                            "key": f"{key}:{channel}",
                            "content": json.dumps(content, sort_keys=True),
                        }
                    }
                }
            },
            tags={RUN_TAG: key},
        )
        for channel in spec.operations.channels
    ]


def belongs(run, stream: Stream, job_names: set[str], instance) -> bool:
    """A run of the stream's jobs, or one materialising its assets ("Materialize")."""
    if run.job_name in job_names:
        return True
    checks = [c.asset_key for c in run.asset_check_selection or ()]
    keys = [*(run.asset_selection or instance.get_asset_keys_for_run(run.run_id))]
    return any(tuple(k.path[:-1]) == stream.key_prefix for k in keys + checks)


def build_operations(stream: Stream, job_names: set[str]) -> dict:
    """The alert job and the two sensors, as Definitions arguments; nothing when the
    stream names no operations channels."""
    spec = alerts_spec(stream)
    if not spec.operations.channels:
        return {"jobs": [], "sensors": []}

    @op(
        name="send_operations_alert",
        retry_policy=RetryPolicy(
            max_retries=spec.max_attempts - 1,
            delay=spec.operations.retry_delay_s,
            backoff=Backoff.EXPONENTIAL,
            jitter=Jitter.PLUS_MINUS,
        ),
    )
    def send_operations_alert(context: OpExecutionContext, config: OperationsAlert):
        channel = spec.channels[config.channel]
        content = json.loads(config.content)
        # a retry: the last attempt may have posted before it failed (Slack keeps our key)
        retry = context.retry_number > 0 and isinstance(channel, SlackChannel)
        if retry and find_sent_slack(channel, config.key, time.time() - 86400):
            context.log.info(f"{config.key} was already posted")
            return
        delivery = send(channel, config.key, content, None, None)
        if delivery.ok:
            context.log.info(f"{config.key} delivered to {config.channel}")
        elif delivery.retryable:
            raise RuntimeError(f"{config.channel}: {delivery.error}")
        else:
            raise Failure(f"{config.channel}: {delivery.error}", allow_retries=False)

    @job(
        name=stream.named("operations_alert_job"),
        description="Sends one operations alert (a failed run, a stale gold table) to "
        "one channel, retried with backoff; started by the operations sensors.",
    )
    def operations_alert_job():
        send_operations_alert()

    @run_failure_sensor(
        name=stream.named("operations_run_failure_sensor"),
        request_job=operations_alert_job,
        minimum_interval_seconds=INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="A failed run of the stream (a failed blocking check fails its "
        "run) reaches the operations channels.",
    )
    def operations_run_failure(context: RunFailureSensorContext):
        run = context.dagster_run
        if not belongs(run, stream, job_names, context.instance):
            return None  # another stream's: the tick goes on to the next run
        content = failed_run_content(stream, spec, context)
        return requests(spec, f"run-failure-{run.run_id}", content)

    keys = [stream.key(t) for t in FRESH_TABLES]

    @sensor(
        name=stream.named("operations_freshness_sensor"),
        job=operations_alert_job,
        minimum_interval_seconds=INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="A gold table failing its freshness policy (and fresh again) "
        "reaches the operations channels.",
    )
    def operations_freshness(context: SensorEvaluationContext):
        seen = json.loads(context.cursor or "{}")
        found = []
        for key, record in context.instance.get_freshness_state_records(keys).items():
            name, state = key.to_user_string(), record.freshness_state.value
            before, seen[name] = seen.get(name), state
            stale = state == "FAIL" and before != "FAIL"
            # fresh again, or no longer evaluated (the policy removed): resolve either way
            fresh = before == "FAIL" and state != "FAIL"
            if not (stale or fresh):
                continue
            content = freshness_content(stream, spec, context.instance, key, state)
            moment = f"{record.updated_at.timestamp():.0f}"
            found += requests(spec, f"{content['dedup_key']}-{state}-{moment}", content)
        return SensorResult(run_requests=found, cursor=json.dumps(seen, sort_keys=True))

    return {
        "jobs": [operations_alert_job],
        "sensors": [operations_run_failure, operations_freshness],
    }
