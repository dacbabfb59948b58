"""The LLM calls' OpenTelemetry metrics, exported over OTLP to a real metrics store
(VictoriaMetrics from Debian's package) and read back from it with PromQL; off, they cost
nothing."""

import time

import pytest

from anomaly_assets.devtools.fake_azure_openai import (
    UNCHECKED_KEY,
    FakeAzureOpenAI,
    ImperfectModel,
)
from anomaly_assets.devtools.metrics_store import LocalMetricsStore
from anomaly_assets.devtools.services import free_port
from anomaly_assets.enrichment import telemetry
from anomaly_assets.enrichment.pricing import DEFAULT_PRICES, call_cost
from anomaly_assets.enrichment.prompts import load_prompt
from anomaly_assets.enrichment.resource import AzureOpenAIResource
from anomaly_assets_tests.enrichment.test_explainers import PAYLOAD

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_METRICS_EXPORTER",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture
def fresh_telemetry(monkeypatch):
    """No OTEL variables and no meter provider before; the provider shut down after."""
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(telemetry, "_provider", None)
    monkeypatch.setattr(telemetry, "_instruments", None)
    yield monkeypatch
    if telemetry._provider is not None:
        telemetry._provider.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with LocalMetricsStore(
        port=free_port(), data_dir=tmp_path_factory.mktemp("metrics")
    ) as running:
        yield running


def value(store, promql: str) -> float:
    result = store.wait_for(promql)
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


def test_genai_metrics_reach_an_otlp_store_with_the_conventions_names(
    fresh_telemetry, store
):
    fresh_telemetry.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", store.otlp_metrics_endpoint
    )
    fresh_telemetry.setenv("OTEL_SERVICE_NAME", "anomaly_assets_test_telemetry")
    rates = {"500": 0.15, "schema": 0.15, "foreign_factor": 0.15}
    with FakeAzureOpenAI(imperfect=ImperfectModel(rates, seed=3)) as fake:
        explainer = AzureOpenAIResource(
            endpoint=fake.endpoint, api_key=UNCHECKED_KEY, timeout_s=5
        ).explainer()
        results = [explainer.explain(load_prompt(), PAYLOAD) for _ in range(30)]
        explainer.metrics.cache(hits=3, misses=9)
        telemetry.flush()
    drawn = fake.drawn
    assert drawn.count("500") >= 3 and drawn.count("schema") >= 3
    service = 'service.name="anomaly_assets_test_telemetry"'
    chat = (
        f'{service}, gen_ai.operation.name="chat", '
        'gen_ai.provider.name="azure.ai.openai", gen_ai.request.model="gpt-4.1-mini"'
    )
    # every request is one operation; the failed ones carry error.type
    assert value(
        store, f"sum(gen_ai.client.operation.duration_count{{{chat}}})"
    ) == len(drawn)
    assert value(
        store,
        f'sum(gen_ai.client.operation.duration_count{{{chat}, error.type="500"}})',
    ) == drawn.count("500")
    assert value(
        store, f'sum(anomaly_assets.llm.errors{{{chat}, error.type="500"}})'
    ) == drawn.count("500")
    # answers refused by the checks, asked again or final
    assert value(
        store, f'sum(anomaly_assets.llm.errors{{{chat}, error.type="invalid_answer"}})'
    ) == drawn.count("schema")
    assert value(
        store,
        f'sum(anomaly_assets.llm.errors{{{chat}, error.type="ungrounded_answer"}})',
    ) == drawn.count("foreign_factor")
    # tokens by type, and their cost, as the calls' own records say
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    assert prompt > 0 and completion > 0
    tokens = f"gen_ai.client.token.usage_sum{{{chat}, gen_ai.token.type=%r}}"
    assert value(store, "sum(" + tokens % "input" + ")") == prompt
    assert value(store, "sum(" + tokens % "output" + ")") == completion
    cost = sum(call_cost(DEFAULT_PRICES, "gpt-4.1-mini", prompt, completion))
    assert value(store, f"sum(anomaly_assets.llm.cost{{{chat}}})") == pytest.approx(
        cost, rel=1e-9
    )
    # a histogram with the conventions' buckets: every request under 81.92 s
    assert value(
        store,
        f'sum(gen_ai.client.operation.duration_bucket{{{chat}, le="81.92"}})',
    ) == len(drawn)
    assert value(store, f"anomaly_assets.llm.cache.hit_ratio{{{chat}}}") == 0.25
    assert (
        value(
            store,
            f'sum(anomaly_assets.llm.cache.lookups{{{chat}, anomaly_assets.cache.hit="true"}})',
        )
        == 3
    )


def test_without_an_endpoint_nothing_is_measured(fresh_telemetry):
    with FakeAzureOpenAI() as fake:
        explainer = AzureOpenAIResource(
            endpoint=fake.endpoint, api_key=UNCHECKED_KEY, timeout_s=5
        ).explainer()
        assert explainer.explain(load_prompt(), PAYLOAD).status == "ok"
    assert explainer.metrics is None and telemetry._provider is None
    # switched off explicitly, an endpoint does not turn it on
    fresh_telemetry.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    fresh_telemetry.setenv("OTEL_METRICS_EXPORTER", "none")
    assert telemetry.call_metrics("azure_openai", "m", "http://x", {}) is None
    assert telemetry._provider is None


def test_a_grpc_protocol_turns_metrics_off_and_says_what_to_set(
    fresh_telemetry, caplog
):
    fresh_telemetry.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    fresh_telemetry.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert telemetry.call_metrics("azure_openai", "m", "http://x", {}) is None
    assert "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf" in caplog.text


def test_an_unreachable_store_costs_a_bounded_flush_not_a_call(fresh_telemetry, caplog):
    fresh_telemetry.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        f"http://127.0.0.1:{free_port()}/opentelemetry/v1/metrics",
    )
    fresh_telemetry.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1")
    with FakeAzureOpenAI() as fake:
        explainer = AzureOpenAIResource(
            endpoint=fake.endpoint, api_key=UNCHECKED_KEY, timeout_s=5
        ).explainer()
        assert explainer.explain(load_prompt(), PAYLOAD).status == "ok"
    t0 = time.monotonic()
    telemetry.flush(timeout_ms=3000)
    assert time.monotonic() - t0 < 5
    assert "Failed to export metrics" in caplog.text, "the exporter says so in the log"
