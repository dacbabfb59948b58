"""Explainers: one interface over Azure OpenAI, any OpenAI-compatible endpoint, and offline rules.

``explain`` never raises: every outcome is a ``CallResult`` with a status, so a failure is a
row, not a missing row. Transport faults (429 with Retry-After, 5xx, timeouts) are retried by
the openai SDK (``max_retries``); answers that are not valid JSON, break the schema or are
refusals are asked again up to ``max_attempts`` times, then recorded as such.
"""

import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from pydantic import ValidationError

from anomaly_assets.llm.prompts import Prompt
from anomaly_assets.llm.schema import AnomalyExplanation

RAW_LIMIT = 2000


@dataclass
class CallResult:
    status: str  # ok | invalid | error
    explanation: AnomalyExplanation | None = None
    error: str | None = None
    raw_response: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 0


def _messages(prompt: Prompt, payload: dict) -> list[dict]:
    # Instructions in the system message; the event data only as a JSON document.
    return [
        {"role": "system", "content": prompt.text},
        {"role": "user", "content": json.dumps(payload, sort_keys=True, default=str)},
    ]


class OpenAIExplainer:
    """Structured explanations through an ``openai`` client (``AzureOpenAI`` or ``OpenAI``)."""

    def __init__(
        self,
        client,
        model: str,
        provider: str,
        endpoint: str,
        max_attempts: int = 2,
        temperature: float = 0.0,
        probe_timeout_s: float = 3.0,
    ) -> None:
        self.client, self.model, self.provider = client, model, provider
        self.endpoint = endpoint
        self.max_attempts = max_attempts
        self.temperature = temperature
        self.probe_timeout_s = probe_timeout_s

    def probe(self) -> str | None:
        """None when the endpoint accepts connections, else why not (one per run)."""
        url = urlparse(self.endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            with socket.create_connection(
                (url.hostname, port), timeout=self.probe_timeout_s
            ):
                return None
        except OSError as exc:
            return f"{self.endpoint} unreachable: {exc}"

    def explain(self, prompt: Prompt, payload: dict) -> CallResult:
        import openai

        result = CallResult(status="error")
        t0 = time.perf_counter()
        for attempt in range(1, self.max_attempts + 1):
            result.attempts = attempt
            try:
                completion = self.client.chat.completions.parse(
                    model=self.model,
                    messages=_messages(prompt, payload),
                    response_format=AnomalyExplanation,
                    temperature=self.temperature,
                )
            except (ValidationError, json.JSONDecodeError) as exc:
                result.status, result.error = (
                    "invalid",
                    f"schema or JSON: {_first_line(exc)}",
                )
                result.raw_response = _raw_from(exc)
                continue
            except openai.LengthFinishReasonError as exc:
                result.status, result.error = "invalid", f"truncated answer: {exc}"
                continue
            except openai.APIStatusError as exc:
                result.status = "error"
                result.error = f"HTTP {exc.status_code}: {_first_line(exc)}"
                break  # the SDK already retried what is worth retrying
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
                break
            except openai.OpenAIError as exc:
                result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
                break
            usage = completion.usage
            if usage is not None:
                result.prompt_tokens += usage.prompt_tokens
                result.completion_tokens += usage.completion_tokens
            message = completion.choices[0].message
            result.raw_response = (message.content or message.refusal or "")[:RAW_LIMIT]
            if message.refusal:
                result.status, result.error = (
                    "error",
                    f"refusal: {message.refusal[:200]}",
                )
                continue
            result.status, result.error = "ok", None
            result.explanation = message.parsed
            break
        result.latency_ms = (time.perf_counter() - t0) * 1000
        return result


def _first_line(exc: Exception) -> str:
    return (
        str(exc).strip().splitlines()[0][:300]
        if str(exc).strip()
        else type(exc).__name__
    )


def _raw_from(exc: Exception) -> str | None:
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if errors and isinstance(errors[0].get("input"), str):
            return errors[0]["input"][:RAW_LIMIT]
    doc = getattr(exc, "doc", None)
    return doc[:RAW_LIMIT] if isinstance(doc, str) else None


#: Severity percentile -> risk level for the offline explainer.
_RISK = ((99.9, "critical"), (99.5, "high"), (99.0, "medium"))


class OfflineExplainer:
    """Deterministic explanations built from the contributions, for runs without an endpoint.

    Every summary says it comes from this explainer, so nobody mistakes it for an LLM's.
    """

    provider = "offline"
    model = "offline-rules-v1"

    def probe(self) -> str | None:
        return None

    def explain(self, prompt: Prompt, payload: dict) -> CallResult:
        t0 = time.perf_counter()
        contributions = payload["top_contributions"]
        # The factors every row of the group shares, strongest first: grounded for each row.
        shared = payload.get("group_factors") or list(contributions)[:1]
        factors = sorted(shared, key=lambda f: -contributions.get(f, 0.0))
        top_severity = payload["severity_range"][1]
        risk = next((level for cut, level in _RISK if top_severity >= cut), "low")
        described = "; ".join(
            f"{f} ({payload['feature_definitions'][f]})" for f in factors
        )
        explanation = AnomalyExplanation(
            summary=(
                f"[offline explainer, no LLM] {payload['group_size']} "
                f"{payload['segment']} event(s) flagged, driven by "
                f"{', '.join(factors)}."
            )[:400],
            user_intent="Not inferred: the offline explainer only restates the model's evidence.",
            risk_level=risk,
            risk_explanation=(
                f"Severity up to the {top_severity:.1f}th percentile of training "
                f"scores; strongest factors: {described}."
            )[:600],
            confidence=0.3,
            top_factors=factors,
            recommended_action=(
                "Review these events; configure an LLM endpoint for a "
                "written explanation."
            )[:300],
        )
        return CallResult(
            status="ok",
            explanation=explanation,
            raw_response=explanation.model_dump_json()[:RAW_LIMIT],
            latency_ms=(time.perf_counter() - t0) * 1000,
            attempts=1,
        )
