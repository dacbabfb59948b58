"""The real openai client against a local Azure-protocol server: schema, deployment path,
faults and their statuses; redaction; the offline explainer."""

import json
import time

import pytest

from anomaly_assets.devtools.fake_azure_openai import FakeAzureOpenAI
from anomaly_assets.llm.prompts import load_prompt
from anomaly_assets.llm.redaction import REDACTED, mask_text, redact_record
from anomaly_assets.resources.llm import AzureOpenAIResource, OfflineExplainerResource

PAYLOAD = {
    "segment": "login",
    "group_size": 12,
    "severity_range": [99.2, 99.95],
    "group_factors": ["failed_login_ips_10m", "failed_logins_10m"],
    "top_contributions": {"failed_logins_10m": 0.12, "failed_login_ips_10m": 0.05},
    "feature_definitions": {
        "failed_logins_10m": "failed logins",
        "failed_login_ips_10m": "distinct IPs of failed logins",
    },
    "examples": [],
    "drift": [],
}
KEY = "sk-test-7f3a9c"


@pytest.fixture
def fake():
    with FakeAzureOpenAI(api_key=KEY, timeout_sleep_s=3.0) as server:
        yield server


def explainer(fake, **kw):
    settings = {"timeout_s": 1.5, "max_retries": 2, "max_attempts": 2, **kw}
    return AzureOpenAIResource(
        endpoint=fake.endpoint, api_key=KEY, **settings
    ).explainer()


def test_request_carries_strict_schema_deployment_and_data_apart(fake):
    prompt = load_prompt()
    result = explainer(fake).explain(prompt, PAYLOAD)
    assert result.status == "ok", result.error
    assert result.explanation.top_factors == [
        "failed_logins_10m",
        "failed_login_ips_10m",
    ]
    assert (
        result.prompt_tokens > 0
        and result.completion_tokens > 0
        and result.latency_ms > 0
    )
    (req,) = fake.requests
    assert req["path"] == "/openai/deployments/gpt-4.1-mini/chat/completions"
    assert req["query"]["api-version"] == ["2024-10-21"]
    fmt = req["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert set(schema["required"]) == {
        "summary",
        "user_intent",
        "risk_level",
        "risk_explanation",
        "confidence",
        "top_factors",
        "recommended_action",
    }
    assert schema["additionalProperties"] is False
    system, user = req["body"]["messages"]
    assert system["role"] == "system" and system["content"] == prompt.text
    assert json.loads(user["content"]) == PAYLOAD  # the data travels as JSON, apart


@pytest.mark.parametrize(
    ("faults", "status", "error", "calls"),
    [
        (["429"], "ok", None, 2),
        (["500"], "ok", None, 2),
        (["500", "500", "500"], "error", "HTTP 500", 3),
        (["timeout", "timeout", "timeout"], "error", "APITimeoutError", 3),
        (["bad_json"], "ok", None, 2),
        (["bad_json", "bad_json"], "invalid", "schema or JSON", 2),
        (["schema", "schema"], "invalid", "schema or JSON", 2),
        (["refusal", "refusal"], "error", "refusal", 2),
    ],
)
def test_faults_end_as_the_right_status(fake, faults, status, error, calls):
    fake.inject(*faults)
    t0 = time.monotonic()
    result = explainer(fake).explain(load_prompt(), PAYLOAD)
    assert result.status == status
    assert (result.error is None) if error is None else (error in result.error)
    assert fake.completion_calls == calls
    if faults == ["429"]:
        assert time.monotonic() - t0 >= 1.0, "Retry-After: 1 was not honoured"
    if status == "invalid":
        assert result.raw_response, "the bad answer is kept (truncated) for inspection"


def test_offline_explainer_says_what_it_is():
    result = OfflineExplainerResource().explainer().explain(load_prompt(), PAYLOAD)
    assert result.status == "ok"
    assert result.explanation.summary.startswith("[offline explainer, no LLM]")
    assert result.explanation.top_factors == [
        "failed_logins_10m",
        "failed_login_ips_10m",
    ]
    assert result.explanation.risk_level == "critical"


def test_redaction_and_masking():
    record = {
        "user_id": "u000042",
        "ip_address": "23.1.2.3",
        "note": "mail bob@x.org or "
        "call +1 415 555 0199, card 4111 1111 1111 1111 from 10.0.0.7",
        "n": 5,
        "user_agent": "A" * 500,
    }
    out = redact_record(record, {"user_id", "ip_address"}, max_chars=120)
    assert out["user_id"] == out["ip_address"] == REDACTED
    assert out["n"] == 5 and len(out["user_agent"]) == 121
    for secret in ("bob@x.org", "555 0199", "4111", "10.0.0.7"):
        assert secret not in out["note"]
    assert (
        mask_text("ping 2001:db8::1:2 from fe80:0:0:0:1:2:3:4") == "ping <ip> from <ip>"
    )
    # timestamps and plain numbers survive
    kept = "2026-11-01T10:00:00.250000+00:00 amount 1234.5 at 10:30:00"
    assert mask_text(kept) == kept
