"""The prompt from MLflow's Prompt Registry: promoting and rolling back are alias moves the
next run picks up, made with one command; a candidate runs in shadow into the evaluation
table only."""

import deltalake
from dagster import DagsterInstance

from anomaly_assets.devtools.fake_azure_openai import UNCHECKED_KEY, FakeAzureOpenAI
from anomaly_assets.enrichment.prompt_registry import PromptRegistry
from anomaly_assets.enrichment.prompt_registry import main as prompts_cli
from anomaly_assets.enrichment.prompts import PROMPT_DIR, load_prompt
from anomaly_assets.enrichment.resource import AzureOpenAIResource
from anomaly_assets_tests.evaluation.test_assets import ENRICH, EVAL, _run, _table


def _enriched(lakehouse) -> dict[str, dict]:
    table = deltalake.DeltaTable(lakehouse.path("gold_events_enriched"))
    return {r["event_id"]: r for r in table.to_pyarrow_table().to_pylist()}


def _versions(rows, batch) -> set:
    return {
        (r["prompt_name"], r["prompt_version"])
        for r in rows.values()
        if r["batch_id"] == batch
    }


def test_promote_rollback_and_shadow(lakehouse, lake, mlflow_settings, capsys):
    v1, v2 = (load_prompt(f"explain_anomalies_v{i}").text for i in (1, 2))

    def cli(*args) -> int:
        return prompts_cli(["--tracking-uri", mlflow_settings.tracking_uri, *args])

    def systems_since(n) -> set:
        sent = fake.explanation_requests[n:]
        return {r["body"]["messages"][0]["content"] for r in sent}

    with FakeAzureOpenAI() as fake, DagsterInstance.ephemeral() as instance:
        llm = AzureOpenAIResource(
            endpoint=fake.endpoint, api_key=UNCHECKED_KEY, timeout_s=5
        )

        def enrich_batch(batch, start):
            lake(batch, n_stuffing=6, n_exfil=3, start=start)
            sent = fake.completion_calls
            _run(lakehouse, mlflow_settings, llm, instance, ENRICH)
            return systems_since(sent)

        # a registry without the prompt is seeded with the default file
        assert enrich_batch("b1", 0) == {v1}
        assert _versions(_enriched(lakehouse), "b1") == {("anomaly_explanation", "1")}

        # promote: one command, picked up by the next run
        assert cli("register", str(PROMPT_DIR / "explain_anomalies_v2.md")) == 0
        assert cli("promote", "2") == 0
        assert "production: 1 -> 2" in capsys.readouterr().out
        assert enrich_batch("b2", 100) == {v2}
        rows = _enriched(lakehouse)
        assert _versions(rows, "b2") == {("anomaly_explanation", "2")}
        assert _versions(rows, "b1") == {("anomaly_explanation", "1")}

        # roll back: one command; version 1's answers for these groups are cached
        assert cli("rollback") == 0
        assert "production: 2 -> 1 (rolled back)" in capsys.readouterr().out
        assert enrich_batch("b3", 200) == set(), "cached under version 1"
        rows = _enriched(lakehouse)
        assert _versions(rows, "b3") == {("anomaly_explanation", "1")}
        assert {
            r["enrichment_status"] for r in rows.values() if r["batch_id"] == "b3"
        } == {"cached"}
        assert cli("rollback") == 0 and cli("rollback") == 0, "a rollback undoes one"
        registry = PromptRegistry(mlflow_settings.tracking_uri)
        assert (registry.version_of("production"), registry.version_of("previous")) == (
            1,
            2,
        )
        assert cli("promote", "9") == 1
        assert "No version 9" in capsys.readouterr().err
        assert registry.version_of("production") == 1, "a failed promote moves nothing"

        # shadow: the candidate explains each evaluated batch's groups again (unless it
        # explained them already), into the evaluation table only
        assert cli("candidate", "2") == 0
        before = _enriched(lakehouse)
        sent = fake.completion_calls
        fake.judge_down = True  # and a judge that fails leaves rows without grades
        _run(lakehouse, mlflow_settings, llm, instance, EVAL)
        assert systems_since(sent) == {v2}
        # b2 was explained with version 2 already: b1 and b3, two groups each
        assert fake.completion_calls - sent == 2 * 2
        assert _enriched(lakehouse) == before
        evaluations = _table(lakehouse)
        production = {
            r["batch_id"]: r for r in evaluations if r["prompt_role"] == "production"
        }
        shadow = {r["batch_id"]: r for r in evaluations if r["prompt_role"] == "shadow"}
        assert set(production) == {"b1", "b2", "b3"} and set(shadow) == {"b1", "b3"}
        assert {r["prompt_version"] for r in shadow.values()} == {"2"}
        assert all(r["is_comparison"] and r["calls"] == 2 for r in shadow.values())
        assert all(r["rows_enriched"] == 9 for r in shadow.values())
        assert production["b3"]["prompt_version"] == "1"
        b1 = production["b1"]
        assert (b1["judged_calls"], b1["judge_errors"]) == (2, 4)
        assert b1["judge_faithful_pct"] is None and b1["evidence_pass_pct"] == 100.0
        client = mlflow_settings.client()
        run = client.get_run(shadow["b1"]["mlflow_run_id"])
        assert run.data.tags["prompt_role"] == "shadow"
        assert run.data.params["prompt_version"] == "2"

        # candidate promoted: no more shadow runs
        assert cli("promote", "2") == 0
        assert "candidate" not in capsys.readouterr().out.splitlines()[-1]
        enrich_batch("b4", 300)
        _run(lakehouse, mlflow_settings, llm, instance, EVAL)
        (b4,) = [r for r in _table(lakehouse) if r["batch_id"] == "b4"]
        assert (b4["prompt_role"], b4["prompt_version"]) == ("production", "2")
