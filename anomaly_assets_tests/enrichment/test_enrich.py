"""The enrichment's plain core (no Spark): a cache that reuses an answer only for the same
question to the same model and never one stating a batch's figures; a budget that serves
CRITICAL first; one row per anomaly whatever happens."""

import json

from anomaly_assets.devtools.synthetic_anomalies import synthetic_anomalies
from anomaly_assets.enrichment.enrich import (
    HISTORY_KEPT,
    EnrichmentSettings,
    cache_from_rows,
    enrich,
    with_attempts,
)
from anomaly_assets.enrichment.explainers import CallResult, OfflineExplainer
from anomaly_assets.enrichment.prompts import load_prompt

PROMPT = load_prompt()


class CountingExplainer(OfflineExplainer):
    """The offline explainer under another name, counting its calls."""

    def __init__(self, provider="offline", summary=None):
        self.provider, self.summary, self.calls = provider, summary, 0

    def explain(self, prompt, payload) -> CallResult:
        self.calls += 1
        result = super().explain(prompt, payload)
        if self.summary:
            result.explanation = result.explanation.model_copy(
                update={"summary": self.summary}
            )
        return result


def run(anomalies, explainer, cache=None, **settings):
    outcome = enrich(
        anomalies, explainer, PROMPT, EnrichmentSettings(**settings), cache=cache
    )
    statuses = {r["enrichment_status"] for r in outcome.rows}
    assert len(outcome.rows) == len(anomalies), "one row per anomaly"
    return outcome, statuses


def test_a_later_batch_with_the_same_evidence_is_served_from_the_cache():
    batch = synthetic_anomalies(60, seed=1, batch="b1")
    first, _ = run(batch, CountingExplainer())
    cache = cache_from_rows(first.cache_entries)
    prefix = f"offline|offline-rules-v1|{PROMPT.key}|"
    assert cache and all(k.startswith(prefix) for k in cache)
    assert {len(k.rsplit("|", 1)[1]) for k in cache} == {16}  # the evidence fingerprint
    # another batch: other events, scores, severities (in the same bands) and examples
    again = batch.assign(
        batch_id="b2",
        event_id=batch["event_id"].str.replace("b1", "b2"),
        severity_percentile=batch["severity_percentile"].where(
            batch["status"] == "CRITICAL", 99.0
        ),
        anomaly_score=batch["anomaly_score"] + 0.01,
        ip_address="45.1.2.3",
    )
    later = CountingExplainer()
    _, statuses = run(again, later, cache=cache)
    assert later.calls == 0 and statuses == {"cached"}


def test_another_provider_or_other_evidence_is_asked_again():
    first, _ = run(synthetic_anomalies(60, seed=1, batch="b1"), CountingExplainer())
    cache = cache_from_rows(first.cache_entries)
    other = CountingExplainer(provider="azure_openai")
    run(synthetic_anomalies(60, seed=1, batch="b2"), other, cache=cache)
    assert other.calls == len(first.cache_entries)
    # the same patterns, now all WARNING: a CRITICAL band's answer is not theirs
    calm = synthetic_anomalies(60, seed=1, batch="b3")
    calm["status"], calm["severity_percentile"] = "WARNING", 99.2
    same = CountingExplainer()
    run(calm, same, cache=cache)
    assert same.calls > 0


def test_an_answer_stating_a_batch_figure_is_never_cached():
    figures = CountingExplainer(summary="12 logins failed from 7 addresses.")
    outcome, statuses = run(synthetic_anomalies(30, batch="b1"), figures)
    assert statuses == {"ok"} and outcome.cache_entries == []
    definitions = CountingExplainer(summary="Many failed logins in 10 minutes.")
    outcome, _ = run(synthetic_anomalies(30, batch="b1"), definitions)
    assert outcome.cache_entries, (
        "a figure of a feature's definition is no batch figure"
    )


def test_the_budget_serves_a_lone_critical_anomaly_before_a_large_warning_group():
    rows = synthetic_anomalies(12, batch="b1")
    rows = rows[rows["event_type"].isin(["login", "file_download"])].copy()
    login = rows["event_type"] == "login"
    rows.loc[login, ["status", "severity_percentile"]] = ["WARNING", 99.8]
    rows.loc[~login, ["status", "severity_percentile"]] = ["CRITICAL", 99.95]
    rows = rows.drop(rows[~login].index[1:])  # one CRITICAL download, several logins
    outcome, _ = run(rows, CountingExplainer(), max_groups=1)
    by_type = {r["event_type"]: r["enrichment_status"] for r in outcome.rows}
    assert by_type["file_download"] == "ok"
    assert by_type["login"] == "skipped_budget"
    skipped = [r for r in outcome.rows if r["enrichment_status"] == "skipped_budget"]
    assert all("CRITICAL first" in r["error"] for r in skipped)


class UngroundedExplainer(OfflineExplainer):
    """Answers that failed the evidence checks (an injected "low", say)."""

    def explain(self, prompt, payload) -> CallResult:
        return CallResult(
            status="ungrounded",
            error="risk_level 'low' is below 'high', the least for CRITICAL anomalies",
            raw_response='{"risk_level": "low"}',
            attempts=2,
        )


def test_an_ungrounded_answer_is_a_row_with_its_reason_and_never_cached():
    outcome, statuses = run(synthetic_anomalies(30, batch="b1"), UngroundedExplainer())
    assert statuses == {"ungrounded"} and outcome.cache_entries == []
    assert all(r["risk_level"] is None and r["error"] for r in outcome.rows)


def test_a_cached_answer_that_fails_this_groups_evidence_is_not_used():
    batch = synthetic_anomalies(60, seed=1, batch="b1")
    first, _ = run(batch, CountingExplainer())
    cache = cache_from_rows(first.cache_entries)
    # every cached answer now names a factor no group contributes
    import json

    cache = {
        k: json.dumps({**json.loads(v), "top_factors": ["hour_of_day"]})
        for k, v in cache.items()
    }
    later = CountingExplainer()
    _, statuses = run(batch.assign(batch_id="b2"), later, cache=cache)
    assert statuses == {"ok"} and later.calls == len(cache)


def test_attempts_count_failed_runs_in_a_row_and_keep_the_latest():
    row = {"event_id": "e1", "enriched_at": "t", "error": "HTTP 500"}
    previous: dict = {}
    for run_number in range(HISTORY_KEPT + 2):
        (out,) = with_attempts(
            [{**row, "enrichment_status": "error"}], previous, f"r{run_number}", 20
        )
        previous = {"e1": out}
    assert out["failed_runs"] == HISTORY_KEPT + 2 and out["will_retry"]
    assert [a["run_id"] for a in out["attempt_history"]] == [
        f"r{i}" for i in range(2, HISTORY_KEPT + 2)
    ]
    (spent,) = with_attempts(
        [{**row, "enrichment_status": "invalid"}], previous, "x", 13
    )
    assert spent["failed_runs"] == 13 and not spent["will_retry"]
    (fixed,) = with_attempts([{**row, "enrichment_status": "ok"}], previous, "y", 3)
    assert fixed["failed_runs"] == 0 and not fixed["will_retry"]
    assert fixed["attempt_history"][-1]["status"] == "ok"


class Crashing(OfflineExplainer):
    def explain(self, prompt, payload) -> CallResult:
        raise KeyError("feature_definitions")


def test_an_explainer_that_raises_gives_error_rows():
    outcome, statuses = run(synthetic_anomalies(12, batch="b1"), Crashing())
    assert statuses == {"error"}
    assert all("KeyError" in r["error"] for r in outcome.rows)


class PayloadKeeper(OfflineExplainer):
    """The offline explainer, keeping the data each call sent."""

    def __init__(self):
        self.payloads = []

    def explain(self, prompt, payload) -> CallResult:
        self.payloads.append(payload)
        return super().explain(prompt, payload)


def test_the_prompt_data_names_the_groups_threats_with_the_streams_attack_techniques():
    anomalies = synthetic_anomalies(4, seed=2)
    anomalies["top_features"] = [["failed_logins_10m", "hour_of_day"]] * 4
    default, mapped = PayloadKeeper(), PayloadKeeper()
    run(anomalies, default)
    run(anomalies, mapped, attack={"credential_stuffing": ["T1110.003"]})
    (sent,), (sent_mapped,) = (
        {json.dumps(p["attack"]) for p in k.payloads} for k in (default, mapped)
    )
    assert json.loads(sent) == {
        "credential_stuffing": ["T1110.004 Brute Force: Credential Stuffing"]
    }
    assert json.loads(sent_mapped) == {
        "credential_stuffing": ["T1110.003 Brute Force: Password Spraying"]
    }
