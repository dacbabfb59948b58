"""Operations alerts from real Dagster runs: a run failed by a blocking check becomes one
alert per operations channel, naming the check, and reaches real receivers through their
errors; another stream's failed run is not this stream's to report. (Freshness and a
killed run, through the real daemon: scenarios/test_ui_streams.py, test_daemon.py.)"""

import re

import pytest
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DagsterInstance,
    asset,
    asset_check,
    build_run_status_sensor_context,
    materialize,
)
from dagster._core.events import DagsterEventType
from pydantic import ValidationError

from anomaly_assets.alerts.operations import build_operations
from anomaly_assets.alerts.settings import AlertsSpec
from anomaly_assets.devtools.receivers import Fault, Receivers
from anomaly_assets.stream import Stream


@pytest.fixture(scope="module")
def receivers(tmp_path_factory):
    with Receivers(tmp_path_factory.mktemp("receivers")) as r:
        yield r


@pytest.fixture
def stream(receivers, monkeypatch):
    monkeypatch.setenv("OPS_HOOK_SECRET", receivers.webhook_secret)
    monkeypatch.setenv("OPS_PD_KEY", receivers.pd_routing_key)
    monkeypatch.setenv("ANOMALY_ALERTS_CA_FILE", str(receivers.cert))
    alerts = {
        "channels": {
            "hook": {
                "type": "webhook",
                "url": f"{receivers.base}/hook",
                "secret_env": "OPS_HOOK_SECRET",
                "timeout_s": 2,
            },
            "pd": {
                "type": "pagerduty",
                "routing_key_env": "OPS_PD_KEY",
                "url": f"{receivers.tls_base}/v2/enqueue",
            },
        },
        "max_attempts": 3,
        "operations": {"channels": ["hook", "pd"], "retry_delay_s": 0.2},
        "dagster_url": "http://dagster.example:3000",
    }
    return Stream(key_prefix=("ops",), alerts=alerts)


def failed_run(instance, prefix: str, hostile: str):
    """A real run of ``<prefix>/gold_anomaly_predictions`` failed by its blocking check."""

    @asset(key=[prefix, "gold_anomaly_predictions"])
    def predictions():
        return 1

    @asset_check(asset=predictions, blocking=True, name="rows_are_scored")
    def rows_are_scored():
        return AssetCheckResult(
            passed=False, severity=AssetCheckSeverity.ERROR, description=hostile
        )

    result = materialize(
        [predictions, rows_are_scored],
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    failure = instance.all_logs(result.run_id, of_type=DagsterEventType.RUN_FAILURE)
    return run, failure[0].dagster_event


def evaluate(sensor, instance, run, event):
    context = build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()
    return sensor(context)


def test_a_failed_blocking_check_reaches_each_channel_once(stream, receivers):
    instance = DagsterInstance.ephemeral()
    parts = build_operations(stream, {"ops__ingest_job"})
    job, (on_failure, _) = parts["jobs"][0], parts["sensors"]
    hostile = "<!channel> *bold* ignore previous instructions\x1b[31m"
    run, event = failed_run(instance, "ops", hostile)

    requests = evaluate(on_failure, instance, run, event)
    assert [r.run_key for r in requests] == [
        f"run-failure-{run.run_id}:hook",
        f"run-failure-{run.run_id}:pd",
    ]
    # the webhook answers 503 once: retried by the op's policy, under the same key
    receivers.fail_next("webhook", Fault(503, "Service Unavailable"))
    receivers.fail_next(
        "pagerduty",
        Fault(429, {"status": "throttle event", "message": "retry later"}),
        times=3,
    )
    before_hook, before_pd = len(receivers.webhook_requests), len(receivers.pd_events)
    results = [
        job.execute_in_process(
            run_config=r.run_config, instance=instance, raise_on_error=False
        )
        for r in requests
    ]
    assert results[0].success
    hook = receivers.webhook_requests[before_hook:]
    assert [h["key"] for h in hook] == [f"run-failure-{run.run_id}:hook"] * 2
    body = hook[-1]["body"]
    assert body["title"].startswith(
        "Blocking check failed: ops/gold_anomaly_predictions:rows_are_scored"
    )
    assert run.run_id in body["summary"] + str(body["details"])
    assert ["Dagster run", "http://dagster.example:3000/runs/" + run.run_id] in [
        list(kv) for kv in body["links"].items()
    ]
    detail = dict(map(tuple, body["details"]))["Failed blocking check"]
    assert "\x1b" not in detail and "<!channel>" in detail, "inert text, not dropped"

    # PagerDuty: 429 three times (one quick retry in the client per attempt) -> the
    # second attempt's retry gets through; one event, keyed by the run
    assert results[1].success
    events = receivers.pd_events[before_pd:]
    assert len(events) == 1
    assert events[0]["dedup_key"] == f"run-failure-{run.run_id}"
    assert events[0]["payload"]["severity"] == "critical"


def test_a_refused_alert_fails_at_once_and_other_streams_runs_are_passed_over(
    stream, receivers
):
    instance = DagsterInstance.ephemeral()
    parts = build_operations(stream, set())
    job, (on_failure, _) = parts["jobs"][0], parts["sensors"]

    other_run, other_event = failed_run(instance, "payments", "x")
    assert evaluate(on_failure, instance, other_run, other_event) is None

    run, event = failed_run(instance, "ops", "x")
    request = evaluate(on_failure, instance, run, event)[1]
    receivers.fail_next(
        "pagerduty",
        Fault(400, {"status": "invalid event", "message": "Event object is invalid"}),
    )
    before = len(receivers.pd_events)
    result = job.execute_in_process(
        run_config=request.run_config, instance=instance, raise_on_error=False
    )
    assert not result.success and len(receivers.pd_events) == before
    retries = instance.all_logs(
        result.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY
    )
    assert retries == [], "a 400 is not retried"


def test_no_operations_channels_no_sensors():
    assert build_operations(Stream(key_prefix=("quiet",)), set()) == {
        "jobs": [],
        "sensors": [],
    }


@pytest.mark.parametrize(
    "operations, says",
    [
        ({"channels": ["pager"]}, "route to unknown channel(s) ['pager']"),
        ({"warn_after_minutes": 60}, "warn_after_minutes must be below"),
        ({"stale_after_minutes": 0}, "greater than or equal to 1"),
    ],
)
def test_operations_mistakes_are_named(operations, says):
    with pytest.raises(ValidationError, match=re.escape(says)):
        AlertsSpec.model_validate({"operations": operations})
