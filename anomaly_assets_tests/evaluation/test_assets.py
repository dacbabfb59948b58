"""ai_enrichment_eval_metrics: Delta rows, MLflow runs read back, the chart, idempotence and
the prompt comparison."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import deltalake
import mlflow
from dagster import AssetKey, AssetSpec, DagsterInstance, materialize
from mlflow import MlflowClient

from anomaly_assets.devtools.fake_azure_openai import FakeAzureOpenAI, ImperfectModel
from anomaly_assets.devtools.services import free_port, wait_for_http
from anomaly_assets.enrichment.assets import enrichment
from anomaly_assets.enrichment.resource import (
    AzureOpenAIResource,
    OfflineExplainerResource,
)
from anomaly_assets.evaluation.assets import EVAL_EXPERIMENT, ai_enrichment_eval_metrics
from anomaly_assets.evaluation.checks import EVALUATION_CHECKS
from anomaly_assets.io_managers import DeltaIOManager

SECRET = "sk-eval-secret-41c7"
ENRICH = [AssetKey("gold_events_enriched"), AssetKey("llm_explanation_cache")]
EVAL = [AssetKey("ai_enrichment_eval_metrics")]


def _run(
    lakehouse, mlflow_settings, llm, instance, selection, config=None, enrich=None
):
    specs = [
        AssetSpec(k)
        for k in ("gold_anomaly_predictions", "silver_events", "gold_batch_drift")
    ]
    result = materialize(
        [*specs, enrichment, ai_enrichment_eval_metrics, *EVALUATION_CHECKS],
        selection=selection,
        resources={
            "io_manager": DeltaIOManager(lakehouse=lakehouse),
            "lakehouse": lakehouse,
            "llm": llm,
            "mlflow_settings": mlflow_settings,
        },
        run_config={
            "ops": {
                **(
                    {"ai_enrichment_eval_metrics": {"config": config}} if config else {}
                ),
                **({"enrichment": {"config": enrich}} if enrich else {}),
            }
        },
        instance=instance,
    )
    assert result.success
    return result


def _azure(fake) -> AzureOpenAIResource:
    return AzureOpenAIResource(endpoint=fake.endpoint, api_key=SECRET, timeout_s=5)


def _enrich_then_evaluate(lakehouse, mlflow_settings, llm, instance, enrich=None):
    _run(lakehouse, mlflow_settings, llm, instance, ENRICH, enrich=enrich)
    return _run(lakehouse, mlflow_settings, llm, instance, EVAL)


def _table(lakehouse):
    rows = deltalake.DeltaTable(
        lakehouse.path("ai_enrichment_eval_metrics")
    ).to_pyarrow_table()
    return sorted(
        rows.to_pylist(), key=lambda r: (r["evaluated_at"], r["evaluation_id"])
    )


def test_eval_rows_mlflow_runs_chart_and_comparison(
    lakehouse, lake, mlflow_settings, tmp_path
):
    lake("b1", n_stuffing=12, n_exfil=4)
    with (
        FakeAzureOpenAI(judge_noise=0.0) as fake,
        DagsterInstance.ephemeral() as instance,
    ):
        llm = _azure(fake)
        _enrich_then_evaluate(lakehouse, mlflow_settings, llm, instance)
        (row,) = _table(lakehouse)
        # both calls graded by the two judges on the endpoint, and by the evidence checks
        assert (row["judge_model"], row["judged_calls"]) == ("azure:/gpt-4.1-mini", 2)
        assert len(fake.judged) == 4 and row["judge_errors"] == 0
        judges = [r for r in fake.requests if r["body"] in fake.judged]
        assert len(judges) == 4 and all(
            r["path"].endswith("/openai/deployments/gpt-4.1-mini/chat/completions")
            and r["headers"]["api-key"] == SECRET
            for r in judges
        )
        assert row["evidence_pass_pct"] == row["judge_faithful_pct"] == 100.0
        assert row["judge_actionable_pct"] == row["judge_agreement_pct"] == 100.0
        assert row["batch_id"] == "b1" and not row["is_comparison"]
        assert (row["rows_enriched"], row["status_ok"], row["calls"]) == (16, 16, 2)
        assert row["validity_pct"] == 100.0 and row["groundedness_pct"] == 100.0
        assert row["confidence_avg"] == 0.8 and row["risk_critical"] == 12
        assert row["prompt_tokens"] > 0 and fake.completion_calls == 2
        assert row["estimated_cost_usd"] > 0 and row["step_seconds"] > 0
        assert (row["prompt_name"], row["prompt_version"], row["prompt_role"]) == (
            "anomaly_explanation",
            "1",
            "production",
        )

        client = mlflow_settings.client()
        run = client.get_run(row["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert (
            run.info.experiment_id
            == client.get_experiment_by_name(EVAL_EXPERIMENT).experiment_id
        )
        assert run.data.params["model"] == "gpt-4.1-mini"
        assert run.data.params["prompt_version"] == row["prompt_version"]
        assert run.data.params["explainer"] == "azure_openai/gpt-4.1-mini"
        assert (
            run.data.metrics["validity_pct"] == 100.0 and run.data.metrics["calls"] == 2
        )
        assert run.data.tags["batch_id"] == "b1"
        assert run.data.tags["dagster_run_id"] == row["dagster_run_id"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts >= {"enriched_rows.csv", "metric_history.png"}
        png = client.download_artifacts(
            run.info.run_id, "metric_history.png", str(tmp_path)
        )
        data = Path(png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        csv = Path(
            client.download_artifacts(
                run.info.run_id, "enriched_rows.csv", str(tmp_path)
            )
        ).read_text()
        assert csv.count("\n") == 17  # header + 16 rows
        header = csv.splitlines()[0].split(",")
        assert "user_id" not in header and "u0001" not in csv, "no user ids in MLflow"
        # each call's trace, linked to the batch's run: what was sent (redacted), the
        # answer, tokens, cost, status
        traces = mlflow.search_traces(
            locations=[run.info.experiment_id],
            run_id=run.info.run_id,
            return_type="list",
        )
        assert row["traces"] == len(traces) == 2
        enriched = deltalake.DeltaTable(lakehouse.path("gold_events_enriched"))
        enriched_rows = enriched.to_pyarrow_table().to_pylist()
        assert {r["trace_id"] for r in enriched_rows} == {
            t.info.trace_id for t in traces
        }
        enrichment_run = enriched_rows[0]["call_id"].split(":")[0]
        sent = [r["body"]["messages"] for r in fake.requests]
        for trace in traces:
            (span,) = trace.data.spans
            assert span.inputs["messages"] in sent
            assert trace.info.state.value == "OK"
            assert json.loads(span.outputs["answer"])["top_factors"]
            usage = trace.info.token_usage
            assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
            assert trace.info.tags["dagster_run_id"] == enrichment_run
            assert trace.info.tags["prompt_version"] == "1"
            assert span.get_attribute("mlflow.llm.cost")["total_cost"] > 0
        assert (
            sum(t.info.token_usage["input_tokens"] for t in traces)
            == (row["prompt_tokens"])
        )
        text = repr([t.to_dict() for t in traces])
        assert "u0001" not in text and "<redacted>" in text

        # the API key reaches neither MLflow nor the table
        assert SECRET not in repr(run.data) + csv + repr(_table(lakehouse)) + text

        # re-evaluating leaves the table unchanged
        before = _table(lakehouse)
        _run(lakehouse, mlflow_settings, llm, instance, EVAL)
        assert _table(lakehouse) == before

        # a second batch gets its own row; the coverage check holds
        lake("b2", n_stuffing=3, n_exfil=2, start=100)
        result = _enrich_then_evaluate(lakehouse, mlflow_settings, llm, instance)
        assert [r["batch_id"] for r in _table(lakehouse)] == ["b1", "b2"]
        assert _table(lakehouse)[1]["status_cached"] == 5
        assert all(c.passed for c in result.get_asset_check_evaluations())

        # two prompts on the same anomalies: one comparison row each
        calls_before = fake.completion_calls
        _run(
            lakehouse,
            mlflow_settings,
            llm,
            instance,
            EVAL,
            {"compare_prompts": ["explain_anomalies_v1", "explain_anomalies_v2"]},
        )
        compared = [r for r in _table(lakehouse) if r["is_comparison"]]
        assert len(compared) == 2 and {r["batch_id"] for r in compared} == {"b2"}
        assert len({r["prompt_version"] for r in compared}) == 2
        assert {(r["prompt_role"], r["prompt_name"]) for r in compared} == {
            ("comparison", "explain_anomalies_v1"),
            ("comparison", "explain_anomalies_v2"),
        }
        assert all(r["rows_enriched"] == 5 and r["calls"] == 2 for r in compared)
        assert fake.completion_calls == calls_before + 4


def test_validity_and_groundedness_follow_the_models_imperfection(
    lakehouse, lake, mlflow_settings
):
    """One call per anomaly through the imperfect local model: answers that break the
    schema lower validity only, answers that break the evidence lower groundedness only,
    in the table and in MLflow alike."""
    event = {"mode": "event"}
    content = {
        "perfect": {},
        "unparseable": {"empty": 0.25, "truncated": 0.25, "overlong": 0.2},
        "ungrounded": {"foreign_factor": 0.35, "invented_number": 0.35},
    }
    with FakeAzureOpenAI() as fake, DagsterInstance.ephemeral() as instance:
        llm = _azure(fake)
        for i, (batch, rates) in enumerate(content.items()):
            fake.imperfect = ImperfectModel(rates, seed=i)
            lake(batch, n_stuffing=20, n_exfil=20, start=100 * i)
            _enrich_then_evaluate(lakehouse, mlflow_settings, llm, instance, event)
        # the next enrichment explains the failed rows again (a perfect model now); the
        # evaluation of batches already evaluated is not rewritten
        before = _table(lakehouse)
        fake.imperfect = None
        calls = fake.completion_calls
        _enrich_then_evaluate(lakehouse, mlflow_settings, llm, instance, event)
        assert fake.completion_calls > calls, "failed rows were explained again"
        enriched = deltalake.DeltaTable(lakehouse.path("gold_events_enriched"))
        statuses = {
            r["enrichment_status"] for r in enriched.to_pyarrow_table().to_pylist()
        }
        assert statuses == {"ok"}
        assert _table(lakehouse) == before
    rows = {r["batch_id"]: r for r in _table(lakehouse)}
    figures = {b: (r["validity_pct"], r["groundedness_pct"]) for b, r in rows.items()}
    assert figures["perfect"] == (100.0, 100.0)
    validity, grounded = figures["unparseable"]
    assert validity < 85 and grounded == 100.0, figures
    validity, grounded = figures["ungrounded"]
    assert validity == 100.0 and grounded < 85, figures
    assert rows["ungrounded"]["status_ungrounded"] > 0
    client = mlflow_settings.client()
    for row in rows.values():
        metrics = client.get_run(row["mlflow_run_id"]).data.metrics
        assert metrics["validity_pct"] == row["validity_pct"]
        assert metrics["groundedness_pct"] == row["groundedness_pct"]
        assert metrics["judge_agreement_pct"] == row["judge_agreement_pct"]

    # the judges grade at most judge_max_calls answers a batch; the faithfulness judge
    # (an imperfect model) mostly agrees with the evidence checks, and the figures are
    # those of the assessments on the calls' traces
    judged = rows["ungrounded"]
    assert judged["judged_calls"] == 20 and judged["judge_errors"] == 0
    assert judged["evidence_pass_pct"] < 90 and judged["judge_faithful_pct"] < 90
    traces = mlflow.search_traces(
        locations=[client.get_run(judged["mlflow_run_id"]).info.experiment_id],
        run_id=judged["mlflow_run_id"],
        return_type="list",
    )
    grades = [
        {a.name: a.feedback.value for a in t.info.assessments if a.feedback}
        for t in traces
    ]
    graded = [g for g in grades if "faithfulness" in g]
    assert len(graded) == 20
    agree = sum(g["faithfulness"] == g["evidence_checks"] for g in graded)
    assert judged["judge_agreement_pct"] == 100.0 * agree / 20
    assert 60 <= judged["judge_agreement_pct"] <= 100
    assert rows["perfect"]["evidence_pass_pct"] == 100.0


def test_with_the_offline_explainer_only_the_evidence_checks_grade(
    lakehouse, lake, mlflow_settings
):
    lake("b1", n_stuffing=6, n_exfil=3)
    with DagsterInstance.ephemeral() as instance:
        llm = OfflineExplainerResource()
        _run(lakehouse, mlflow_settings, llm, instance, ENRICH)
        # as after training in the same process: another experiment is the active one
        mlflow_settings.ensure_experiment("anomaly_model")
        mlflow.set_experiment("anomaly_model")
        _run(lakehouse, mlflow_settings, llm, instance, EVAL)
    (row,) = _table(lakehouse)
    assert (row["judge_model"], row["judged_calls"], row["traces"]) == ("", 2, 2)
    assert row["evidence_pass_pct"] == 100.0
    assert row["judge_faithful_pct"] is None and row["judge_agreement_pct"] is None
    metrics = mlflow_settings.client().get_run(row["mlflow_run_id"]).data.metrics
    assert metrics["evidence_checks/mean"] == 1.0 and "faithfulness/mean" not in metrics


@contextmanager
def mlflow_server(store_uri: str):
    """The MLflow tracking server and UI on the test's store, as a user opens it."""
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            store_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", 90, lambda: server.poll() is None)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_mlflow_ui_serves_each_calls_trace_with_the_batch_run(
    lakehouse, lake, mlflow_settings
):
    lake("b1", n_stuffing=6, n_exfil=3)
    with (
        FakeAzureOpenAI(judge_noise=0.0) as fake,
        DagsterInstance.ephemeral() as instance,
    ):
        llm = _azure(fake)
        _enrich_then_evaluate(lakehouse, mlflow_settings, llm, instance)
    (row,) = _table(lakehouse)
    with mlflow_server(mlflow_settings.tracking_uri) as url:
        with urllib.request.urlopen(url + "/", timeout=10) as page:
            assert page.read(15).lower() == b"<!doctype html>", "the UI is served"
        client = MlflowClient(url)
        run = client.get_run(row["mlflow_run_id"])
        traces = client.search_traces(
            locations=[run.info.experiment_id], run_id=run.info.run_id
        )
        assert len(traces) == row["traces"] == 2
        for found in traces:
            trace = client.get_trace(found.info.trace_id)
            (span,) = trace.data.spans
            assert span.inputs["messages"][0]["role"] == "system"
            assert trace.info.token_usage["input_tokens"] > 0
            grades = {a.name for a in trace.info.assessments}
            assert grades >= {"faithfulness", "actionability", "evidence_checks"}
