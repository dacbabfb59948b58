"""Explainers: one interface over Azure OpenAI, any OpenAI-compatible endpoint, and offline rules.

``explain`` never raises: every outcome is a ``CallResult`` with a status, so a failure is a
row, not a missing row. Transport faults (429, 5xx, timeouts, dropped connections) are
retried here, up to ``max_retries``, waiting what the endpoint's Retry-After asks for, or
backing off. An endpoint that asks for more than ``max_retry_wait_s``, refuses the key, or
fails HALT_AFTER calls in a row stops the run's calls: the remaining groups end at once
with the reason, and a later run explains them. An answer is then checked in three steps: it must be there
(not empty, not cut off, not a refusal), parse into ``AnomalyExplanation`` with its limits
(``invalid`` otherwise), and pass the evidence checks (``ungrounded`` otherwise). A failed
answer is asked again, naming what was wrong, up to ``max_attempts`` in all.
"""

import json
import math
import random
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from pydantic import ValidationError

from anomaly_assets.enrichment.evidence import correction, violations
from anomaly_assets.enrichment.prompts import Prompt
from anomaly_assets.enrichment.redaction import REDACTED, mask_text, safe_url
from anomaly_assets.enrichment.schema import RESPONSE_FORMAT, AnomalyExplanation

RAW_LIMIT = 2000
#: Calls in a row that fail after their retries before a run stops calling.
HALT_AFTER = 3
#: How the error of a call a halted run did not make begins.
NOT_CALLED = "not called: "


@dataclass
class CallResult:
    status: str  # ok | invalid | ungrounded | error
    explanation: AnomalyExplanation | None = None
    error: str | None = None
    raw_response: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 0
    started_ns: int = 0  # wall clock, for the call's trace
    messages: list | None = (
        None  # as last sent (redacted data); None if nothing was sent
    )


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
        max_retries: int = 3,
        max_retry_wait_s: float = 20.0,
        metrics=None,
    ) -> None:
        """``client`` should not retry by itself (``max_retries=0``): this class does.
        ``metrics``: a ``telemetry.CallMetrics``, or None to measure nothing."""
        self.client, self.model, self.provider = client, model, provider
        self.endpoint = endpoint
        self.max_attempts = max_attempts
        self.max_retries, self.max_retry_wait_s = max_retries, max_retry_wait_s
        self.temperature = temperature
        self.probe_timeout_s = probe_timeout_s
        self._lock = threading.Lock()
        self._halted: str | None = None  # set once: why this run makes no more calls
        self._failures = 0  # calls in a row that failed after their retries
        self.metrics = metrics

    def probe(self) -> str | None:
        """None when the endpoint accepts connections, else why not (one per run)."""
        try:
            url = urlparse(self.endpoint)
            port = url.port or (443 if url.scheme == "https" else 80)
            with socket.create_connection(
                (url.hostname, port), timeout=self.probe_timeout_s
            ):
                return None
        except (OSError, ValueError) as exc:  # refused, unknown host, a malformed URL
            return f"{safe_url(self.endpoint)} unreachable: {self._mask(str(exc))}"

    def _mask(self, text: str) -> str:
        """``text`` safe for rows, logs and MLflow: masked, and without the client's key."""
        key = getattr(self.client, "api_key", None)
        if isinstance(key, str) and len(key) >= 6:
            text = text.replace(key, REDACTED)
        return mask_text(text)

    def _halt(self, reason: str) -> None:
        with self._lock:
            self._halted = self._halted or reason

    def _complete(self, messages: list[dict]):
        """(completion, None), or (None, why not) once the transport retries are spent.

        An endpoint that refuses the key, asks for a longer wait than allowed, or fails
        HALT_AFTER calls in a row stops this run's calls: the rest end at once with the
        reason, for a later run, instead of each waiting out its own retries."""
        import openai

        retry = 0
        while True:
            if self._halted:
                return None, f"{NOT_CALLED}{self._halted}"
            t0 = time.perf_counter()
            try:
                completion = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    response_format=RESPONSE_FORMAT,
                    temperature=self.temperature,
                )
                if self.metrics:
                    self.metrics.request(time.perf_counter() - t0, completion.usage)
                with self._lock:
                    self._failures = 0
                return completion, None
            except openai.OpenAIError as exc:
                error, retry = self._mask(_describe(exc)), retry + 1
                status = getattr(exc, "status_code", None)
                if self.metrics:
                    self.metrics.request(
                        time.perf_counter() - t0,
                        error_type=str(status) if status else type(exc).__name__,
                    )
                if status in (401, 403):
                    self._halt(f"the endpoint refused the credentials ({error})")
                    return None, error
                if retry > self.max_retries or not _retryable(exc):
                    with self._lock:
                        self._failures += 1
                        spent = self._failures >= HALT_AFTER
                    if spent:
                        self._halt(
                            f"{HALT_AFTER} calls in a row failed (last: {error})"
                        )
                    return None, error
                wait = retry_wait(exc, retry)
                if wait > self.max_retry_wait_s:
                    reason = (
                        f"{error}; the endpoint asks to wait {wait:.0f} s, more than "
                        f"max_retry_wait_s ({self.max_retry_wait_s:g} s): left for a "
                        "later run"
                    )
                    self._halt(reason)
                    return None, reason
                time.sleep(wait)

    def explain(self, prompt: Prompt, payload: dict) -> CallResult:
        t0, started_ns = time.perf_counter(), time.time_ns()
        try:
            result = self._explain(prompt, payload)
        except Exception as exc:  # noqa: BLE001 - a failure is a row, never a crash
            result = CallResult(
                status="error",
                error=self._mask(f"{type(exc).__name__}: {_first_line(exc)}"),
            )
        result.latency_ms = (time.perf_counter() - t0) * 1000
        result.started_ns = started_ns
        return result

    def _explain(self, prompt: Prompt, payload: dict) -> CallResult:
        result = CallResult(status="error")
        messages = _messages(prompt, payload)
        for attempt in range(1, self.max_attempts + 1):
            result.attempts = attempt
            completion, error = self._complete(messages)
            if not error or not error.startswith(NOT_CALLED):
                result.messages = messages  # sent (a halted run sends nothing)
            if completion is None:
                if result.error:  # the answer asked again about is the better record
                    error = (
                        f"{error} (asking again after: {result.status}: {result.error})"
                    )
                result.status, result.error = "error", error
                break
            usage = completion.usage
            if usage is not None:
                result.prompt_tokens += usage.prompt_tokens or 0
                result.completion_tokens += usage.completion_tokens or 0
            status, error, content, explanation = read_answer(completion, payload)
            result.status, result.error, result.explanation = status, error, explanation
            result.raw_response = content[:RAW_LIMIT] if content else None
            if status != "ok" and self.metrics:
                kind = "content_filter" if status == "error" else f"{status}_answer"
                self.metrics.rejected(kind)
            if status == "ok" or status == "error":
                break
            # Ask again, naming the problem, after the answer that had it.
            messages = [
                *messages,
                {"role": "assistant", "content": content or ""},
                {"role": "user", "content": correction([error])},
            ]
        if result.status != "ok":
            result.explanation = None
        return result


def read_answer(completion, payload: dict):
    """(status, error, content, explanation) of one completion: ``ok``; ``invalid`` when
    the answer is missing, cut off or breaks the schema's limits; ``ungrounded`` when it
    fails the evidence checks (the caller keeps only its raw text); a refusal
    is ``invalid`` too (asked again: it is often a fluke); ``error`` when the endpoint's
    content filter stopped the answer, which asking again does not change."""
    if not completion.choices:
        return "invalid", "no answer (the completion has no choices)", None, None
    choice = completion.choices[0]
    message = choice.message
    content = message.content
    if getattr(message, "refusal", None):
        return "invalid", f"refusal: {message.refusal[:200]}", message.refusal, None
    if choice.finish_reason == "content_filter":
        return (
            "error",
            "the endpoint's content filter stopped the answer",
            content,
            None,
        )
    if choice.finish_reason == "length":
        return "invalid", "truncated answer (finish_reason=length)", content, None
    if not content or not content.strip():
        return "invalid", "empty answer", content, None
    try:
        explanation = AnomalyExplanation.model_validate_json(content)
    except ValidationError as exc:
        return "invalid", f"schema or JSON: {_validation_summary(exc)}", content, None
    problems = violations(explanation, payload)
    if problems:
        return "ungrounded", "; ".join(problems), content, explanation
    return "ok", None, content, explanation


def _validation_summary(exc: ValidationError) -> str:
    """The first errors of a Pydantic validation, one line each, for the row and re-ask."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "answer"
        parts.append(f"{where}: {error.get('msg', '')}")
    return "; ".join(parts)[:300]


def _retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, openai.APITimeoutError | openai.APIConnectionError)


def retry_wait(exc: Exception, retry: int) -> float:
    """Seconds before retry number ``retry`` (from 1): what the response's ``retry-after-ms``
    or ``Retry-After`` (seconds) asks for, else 0.5 s doubling up to 8 s, less up to 25 %."""
    response = getattr(exc, "response", None)
    headers = response.headers if response is not None else {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            wait = float(headers[name]) / scale
        except (KeyError, TypeError, ValueError):  # absent, or an HTTP date
            continue
        if math.isfinite(wait) and wait >= 0:
            return wait
    return min(0.5 * 2 ** (retry - 1), 8.0) * (1 - 0.25 * random.random())


def _describe(exc: Exception) -> str:
    """The error in one line (the caller masks it)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {_first_line(exc)}"
    return f"{type(exc).__name__}: {exc}"


def _first_line(exc: Exception) -> str:
    return (
        str(exc).strip().splitlines()[0][:300]
        if str(exc).strip()
        else type(exc).__name__
    )


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
        t0, started_ns = time.perf_counter(), time.time_ns()
        contributions = payload["top_contributions"]
        # The factors every row of the group shares, strongest first: grounded for each row.
        shared = payload.get("group_factors") or list(contributions)[:1]
        factors = sorted(shared, key=lambda f: -contributions.get(f, 0.0))
        top_severity = payload["severity_range"][1]
        risk = next((level for cut, level in _RISK if top_severity >= cut), "low")
        critical = bool(payload.get("statuses", {}).get("CRITICAL"))
        if critical and risk in ("low", "medium"):  # as the evidence checks require
            risk = "high"
        described = "; ".join(
            f"{f} ({payload['feature_definitions'][f]})" for f in factors
        )
        band = "CRITICAL" if critical else "flagged"
        explanation = AnomalyExplanation(
            summary=(
                f"[offline explainer, no LLM] {payload['segment']} events flagged, "
                f"driven by {', '.join(factors)}."
            )[:400],
            user_intent="Not inferred: the offline explainer only restates the model's evidence.",
            risk_level=risk,
            risk_explanation=(
                f"Severity in the {band} band (the scores and percentiles are in the "
                f"row); strongest factors: {described}."
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
            started_ns=started_ns,
            # what an endpoint would have been sent: the trace shows the same evidence
            messages=_messages(prompt, payload),
        )
