"""gold_events_enriched against a local Azure-protocol server: grouping, cache, redaction,
faults as statuses, and no secret anywhere."""

from pathlib import Path

import deltalake
import pytest
from dagster import AssetKey, AssetSpec, DagsterInstance, materialize

from anomaly_assets.devtools.broker import free_port
from anomaly_assets.devtools.fake_azure_openai import FakeAzureOpenAI
from anomaly_assets.enrichment.assets import enrichment
from anomaly_assets.enrichment.checks import ENRICHMENT_CHECKS
from anomaly_assets.enrichment.resource import (
    AzureOpenAIResource,
    OfflineExplainerResource,
)
from anomaly_assets.io_managers import DeltaIOManager
from anomaly_assets.resources.mlflow import MlflowResource

KEY = "sk-secret-9d1e"


@pytest.fixture(autouse=True)
def _mlflow_store(mlflow_settings):
    """Puts the fixture's fresh store where _run's MlflowResource opens it."""


def _run(lakehouse, llm, instance, **config):
    specs = [
        AssetSpec(k)
        for k in ("gold_anomaly_predictions", "silver_events", "gold_batch_drift")
    ]
    return materialize(
        [*specs, enrichment, *ENRICHMENT_CHECKS],
        selection=[AssetKey("gold_events_enriched"), AssetKey("llm_explanation_cache")],
        resources={
            "io_manager": DeltaIOManager(lakehouse=lakehouse),
            "lakehouse": lakehouse,
            "llm": llm,
            # the store the mlflow_settings fixture would give: beside the lakehouse
            "mlflow_settings": MlflowResource(
                tracking_uri=f"sqlite:///{Path(lakehouse.root).parent / 'mlflow.db'}",
                artifact_location=str(Path(lakehouse.root).parent / "mlartifacts"),
            ),
        },
        run_config={"ops": {"enrichment": {"config": config}}} if config else None,
        instance=instance,
        raise_on_error=False,
    )


def _rows(lakehouse):
    table = deltalake.DeltaTable(lakehouse.path("gold_events_enriched"))
    return {r["event_id"]: r for r in table.to_pyarrow_table().to_pylist()}


def test_groups_cache_redaction_and_no_secrets(lakehouse, lake, tmp_path):
    lake("b1", n_stuffing=12, n_exfil=4)
    with FakeAzureOpenAI(api_key=KEY) as fake, DagsterInstance.ephemeral() as instance:
        llm = AzureOpenAIResource(endpoint=fake.endpoint, api_key=KEY, timeout_s=5)
        first = _run(lakehouse, llm, instance)
        assert first.success
        rows = _rows(lakehouse)
        assert len(rows) == 16, "every anomaly has a row, normal events none"
        assert fake.completion_calls == 2, (
            "12 + 4 identical-pattern anomalies: two calls"
        )
        stuffing = [r for r in rows.values() if r["event_type"] == "login"]
        assert {r["summary"] for r in stuffing} == {stuffing[0]["summary"]}
        assert {r["group_size"] for r in stuffing} == {12}
        assert {r["enrichment_status"] for r in rows.values()} == {"ok"}
        # the registry's production prompt, seeded from the default file
        assert {(r["prompt_name"], r["prompt_version"]) for r in rows.values()} == {
            ("anomaly_explanation", "1")
        }
        assert all(
            set(r["top_factors"]) <= set(r["top_features"]) for r in rows.values()
        )
        checks = {c.check_name: c.passed for c in first.get_asset_check_evaluations()}
        assert checks == {
            "enrichment_validity": True,
            "critical_anomalies_explained": True,
            "explanations_grounded": True,
        }

        # redacted columns and masked personal data never left the process
        bodies = "".join(r["raw"] for r in fake.requests)
        for secret in ("u0001", "sess-1", "23.9.8.", "ops1@corp.example"):
            assert secret not in bodies, secret
        assert "<redacted>" in bodies and "<email>" in bodies

        # a later batch with the same patterns is explained from the cache, without a call
        lake("b2", n_stuffing=3, n_exfil=2, start=100)
        second = _run(lakehouse, llm, instance)
        assert second.success and fake.completion_calls == 2
        rows = _rows(lakehouse)
        assert {
            r["enrichment_status"] for r in rows.values() if r["batch_id"] == "b2"
        } == {"cached"}

        # re-running changes nothing
        before = _rows(lakehouse)
        assert _run(lakehouse, llm, instance).success
        assert _rows(lakehouse) == before and fake.completion_calls == 2

        # the API key is nowhere: tables, metadata, event log
        for name in ("gold_events_enriched", "llm_explanation_cache"):
            data = (
                deltalake.DeltaTable(lakehouse.path(name))
                .to_pyarrow_table()
                .to_pylist()
            )
            assert KEY not in repr(data)
        log_text = repr([instance.all_logs(res.run_id) for res in (first, second)])
        assert "enrichment" in log_text
        assert KEY not in log_text


def test_budget_and_faults_are_rows_not_gaps(lakehouse, lake):
    lake("b1", n_stuffing=6, n_exfil=3)
    with FakeAzureOpenAI(api_key=KEY) as fake, DagsterInstance.ephemeral() as instance:
        fake.inject("schema", "schema")
        llm = AzureOpenAIResource(
            endpoint=fake.endpoint, api_key=KEY, timeout_s=5, max_concurrency=1
        )
        result = _run(lakehouse, llm, instance, max_groups=1)
        assert result.asset_materializations_for_node("enrichment"), (
            "the asset completes"
        )
        assert not result.success, "...and its blocking validity check fails the run"
        rows = _rows(lakehouse).values()
        by_type = {r["event_type"]: r["enrichment_status"] for r in rows}
        # the CRITICAL group ranks first, its answers broke the schema twice: invalid
        assert by_type == {"login": "invalid", "file_download": "skipped_budget"}
        assert all(r["error"] for r in rows)
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks["enrichment_validity"] is False
        assert (
            checks["critical_anomalies_explained"] is True
        )  # invalid, with its reason


def test_unreachable_endpoint_completes_with_statuses_and_fails_validity(
    lakehouse, lake
):
    lake("b1", n_stuffing=4, n_exfil=2)
    llm = AzureOpenAIResource(
        endpoint=f"http://127.0.0.1:{free_port()}",
        api_key=KEY,
        timeout_s=2,
        max_retries=0,
    )
    with DagsterInstance.ephemeral() as instance:
        result = _run(lakehouse, llm, instance)
    assert result.asset_materializations_for_node("enrichment"), "the asset completes"
    assert not result.success, "...and its blocking validity check fails the run"
    rows = _rows(lakehouse).values()
    assert {r["enrichment_status"] for r in rows} == {"endpoint_unreachable"}
    assert all("unreachable" in r["error"] for r in rows)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["enrichment_validity"] is False


def test_a_re_scored_row_follows_its_new_status(lakehouse, lake, spark):
    """gold corrects two scores (an out-of-order event arrived): the anomaly that is no
    longer one leaves the enriched table, the new anomaly is explained; nothing else is
    read or rewritten."""
    from delta.tables import DeltaTable

    lake("b1", n_stuffing=4, n_exfil=0)
    with DagsterInstance.ephemeral() as instance:
        llm = OfflineExplainerResource()
        assert _run(lakehouse, llm, instance).success
        assert set(_rows(lakehouse)) == {f"b1-{i}" for i in range(4)}
        gold = DeltaTable.forPath(spark, lakehouse.path("gold_anomaly_predictions"))
        gold.update(
            "event_id = 'b1-0'",
            {"is_anomaly": "false", "status": "'NORMAL'", "anomaly_score": "0.4"},
        )
        gold.update(
            "event_id = 'b1-5'",
            {
                "is_anomaly": "true",
                "status": "'WARNING'",
                "anomaly_score": "0.66",
                "top_features": "array('failed_logins_10m')",
                "feature_contributions": "map('failed_logins_10m', 0.1D)",
            },
        )
        before = {k: v["enriched_at"] for k, v in _rows(lakehouse).items()}
        assert _run(lakehouse, llm, instance).success
        after = _rows(lakehouse)
        assert set(after) == {"b1-1", "b1-2", "b1-3", "b1-5"}
        assert after["b1-5"]["anomaly_status"] == "WARNING"
        # rows whose score did not change were not enriched again
        assert all(
            after[k]["enriched_at"] == before[k] for k in ("b1-1", "b1-2", "b1-3")
        )


def _checks(result) -> dict:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_failed_rows_are_explained_again_by_the_next_run(lakehouse, lake):
    """An outage's rows are not final: the next run explains them (without new gold
    changes) and each row keeps its attempts."""
    lake("b1", n_stuffing=4, n_exfil=2)
    with FakeAzureOpenAI(api_key=KEY) as fake, DagsterInstance.ephemeral() as instance:
        llm = AzureOpenAIResource(
            endpoint=fake.endpoint, api_key=KEY, timeout_s=5, max_retries=0
        )
        fake.inject("500", "500")  # both groups' calls fail
        first = _run(lakehouse, llm, instance)
        rows = _rows(lakehouse)
        assert {r["enrichment_status"] for r in rows.values()} == {"error"}
        assert {(r["failed_runs"], r["will_retry"]) for r in rows.values()} == {
            (1, True)
        }
        critical = _checks(first)["critical_anomalies_explained"]
        assert critical.passed, "CRITICAL rows awaiting a retry do not fail yet"
        assert critical.metadata["awaiting_retry"].value == 4

        second = _run(lakehouse, llm, instance)
        assert second.success and fake.completion_calls == 4
        rows = _rows(lakehouse)
        assert {r["enrichment_status"] for r in rows.values()} == {"ok"}
        for row in rows.values():
            assert (row["failed_runs"], row["will_retry"]) == (0, False)
            history = row["attempt_history"]
            assert [a["status"] for a in history] == ["error", "ok"]
            assert [a["run_id"] for a in history] == [first.run_id, second.run_id]
            assert "HTTP 500" in history[0]["error"]

        # nothing left to retry: a third run makes no call and rewrites nothing
        assert _run(lakehouse, llm, instance).success
        assert _rows(lakehouse) == rows and fake.completion_calls == 4


def test_a_critical_anomaly_whose_runs_are_spent_fails_the_check(lakehouse, lake):
    lake("b1", n_stuffing=3, n_exfil=0)
    with FakeAzureOpenAI(api_key=KEY) as fake, DagsterInstance.ephemeral() as instance:
        llm = AzureOpenAIResource(
            endpoint=fake.endpoint, api_key=KEY, timeout_s=5, max_retries=0
        )
        fake.inject("foreign_factor", "foreign_factor", "low_risk", "low_risk")
        first = _run(lakehouse, llm, instance, max_runs=2)
        assert _checks(first)["critical_anomalies_explained"].passed
        second = _run(lakehouse, llm, instance, max_runs=2)
        rows = _rows(lakehouse).values()
        assert {r["enrichment_status"] for r in rows} == {"ungrounded"}
        assert {(r["failed_runs"], r["will_retry"]) for r in rows} == {(2, False)}
        assert all("below 'high'" in r["error"] for r in rows)
        assert all(r["risk_level"] is None for r in rows), "no ungrounded text is used"
        critical = _checks(second)["critical_anomalies_explained"]
        assert not critical.passed and not second.success
        assert critical.metadata["unexplained_critical"].value == 3
        # spent: later runs leave the rows alone
        _run(lakehouse, llm, instance, max_runs=2)
        assert fake.completion_calls == 4


def test_a_table_from_before_retries_is_upgraded_by_the_next_run(
    lakehouse, lake, spark
):
    """A gold_events_enriched written before failed_runs, will_retry and attempt_history
    existed: its failed rows are retried, the MERGE adds the columns."""
    lake("b1", n_stuffing=4, n_exfil=2)
    with FakeAzureOpenAI(api_key=KEY) as fake, DagsterInstance.ephemeral() as instance:
        llm = AzureOpenAIResource(
            endpoint=fake.endpoint, api_key=KEY, timeout_s=5, max_retries=0
        )
        fake.inject("500", "500")
        _run(lakehouse, llm, instance)
        path = lakehouse.path("gold_events_enriched")
        old = (
            spark.read.format("delta")
            .load(path)
            .drop("failed_runs", "will_retry", "attempt_history")
        )
        old.localCheckpoint().write.format("delta").mode("overwrite").option(
            "overwriteSchema", "true"
        ).partitionBy(*[c for c in ("event_hour",) if c in old.columns]).save(path)
        assert "will_retry" not in deltalake.DeltaTable(path).schema().to_arrow().names

        assert _run(lakehouse, llm, instance).success
        rows = _rows(lakehouse).values()
        assert {r["enrichment_status"] for r in rows} == {"ok"}
        assert {(r["failed_runs"], r["will_retry"]) for r in rows} == {(0, False)}
        assert {len(r["attempt_history"]) for r in rows} == {1}
