"""OpenTelemetry metrics of the LLM calls, under the GenAI semantic-convention names.

Off unless an OTLP endpoint for metrics is configured with the standard variables:
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (the full URL), or ``OTEL_EXPORTER_OTLP_ENDPOINT``
(``/v1/metrics`` is added); headers, timeout and certificates come from the matching
``OTEL_EXPORTER_OTLP_*`` variables, and ``OTEL_METRICS_EXPORTER=none`` turns it off. Off
costs nothing: ``call_metrics()`` returns None and the explainers skip every measurement.

Exported over OTLP/HTTP (protobuf), cumulative, every ``OTEL_METRIC_EXPORT_INTERVAL`` ms
(60 s by default) and when a run's enrichment ends (``flush``). Each process reports as its
own ``service.instance.id``: Dagster runs steps in separate processes, and two processes'
cumulative series must not be taken for one.
"""

import functools
import logging
import os
import threading
import uuid
from urllib.parse import urlparse

from anomaly_assets.enrichment.pricing import call_cost

METER_NAME = "anomaly_assets.llm"
SERVICE_NAME = "anomaly_assets"
#: The semantic conventions' provider names for ours.
PROVIDER_NAMES = {"azure_openai": "azure.ai.openai", "openai_compatible": "openai"}
#: Bucket boundaries the GenAI conventions advise.
DURATION_BUCKETS_S = [0.01 * 2**i for i in range(14)]  # 0.01 .. 81.92
TOKEN_BUCKETS = [4**i for i in range(14)]  # 1 .. 67,108,864

_lock = threading.Lock()
_provider = None
log = logging.getLogger(__name__)


def _observing(method):
    """A measurement that fails is logged, never raised: it must not fail the call."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Exception:
            log.warning("LLM metrics: %s failed", method.__name__, exc_info=True)

    return wrapper


def enabled() -> bool:
    """Whether an OTLP metrics endpoint is configured (and metrics are not switched off)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_METRICS_EXPORTER", "otlp").lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _meter_provider():
    """This process's MeterProvider with the OTLP/HTTP exporter (created once), or None
    when the configured protocol is not OTLP/HTTP."""
    global _provider
    with _lock:
        if _provider is None:
            protocol = os.environ.get(
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            )
            if protocol != "http/protobuf":
                log.warning(
                    "LLM metrics off: OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL=%r, and this "
                    "project exports metrics over OTLP/HTTP only; set "
                    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf and point the "
                    "endpoint at the receiver's HTTP port",
                    protocol,
                )
                return None
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import Resource

            resource = Resource.create(
                {
                    "service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME),
                    "service.instance.id": str(uuid.uuid4()),
                }
            )
            reader = PeriodicExportingMetricReader(OTLPMetricExporter())
            _provider = MeterProvider(metric_readers=[reader], resource=resource)
        return _provider


def flush(timeout_ms: int = 10_000) -> None:
    """Export what this process measured now, waiting at most ``timeout_ms``; a store that
    does not answer costs that wait and an error in the log (the exporter's), never the
    run."""
    if _provider is not None:
        try:
            _provider.force_flush(timeout_ms)
        except Exception:
            log.warning("LLM metrics: export failed", exc_info=True)


class _Instruments:
    """The instruments, created once per process."""

    def __init__(self, meter):
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of GenAI client operations (one request to the model).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Input and output tokens used per request.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.cost = meter.create_counter(
            "anomaly_assets.llm.cost",
            unit="USD",
            description="Estimated cost of the requests' tokens at list prices.",
        )
        self.errors = meter.create_counter(
            "anomaly_assets.llm.errors",
            unit="{request}",
            description="Requests that failed (error.type: HTTP status or exception) and "
            "answers that were refused (invalid_answer, ungrounded_answer, "
            "content_filter).",
        )
        self.cache_lookups = meter.create_counter(
            "anomaly_assets.llm.cache.lookups",
            unit="{group}",
            description="Groups looked up in the explanation cache, by hit (true/false).",
        )
        self.cache_hit_ratio = meter.create_gauge(
            "anomaly_assets.llm.cache.hit_ratio",
            unit="1",
            description="Share of a run's groups answered from the cache.",
        )


_instruments: _Instruments | None = None


class CallMetrics:
    """What one explainer measures, with the attributes the conventions name
    (``gen_ai.*``, ``error.type``, ``server.*``)."""

    def __init__(self, instruments: _Instruments, provider, model, endpoint, prices):
        url = urlparse(endpoint)
        self.attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider),
            "gen_ai.request.model": model,
            "server.address": url.hostname or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        self.model, self.prices = model, prices
        self._i = instruments

    @_observing
    def request(self, seconds: float, usage=None, error_type: str | None = None):
        """One request: its duration, and its tokens and cost, or its error type."""
        if error_type is not None:
            failed = {**self.attributes, "error.type": error_type}
            self._i.duration.record(seconds, failed)
            self._i.errors.add(1, failed)
            return
        self._i.duration.record(seconds, self.attributes)
        if usage is None:
            return
        prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
        self._i.tokens.record(prompt, {**self.attributes, "gen_ai.token.type": "input"})
        self._i.tokens.record(
            completion, {**self.attributes, "gen_ai.token.type": "output"}
        )
        self._i.cost.add(
            sum(call_cost(self.prices, self.model, prompt, completion)),
            self.attributes,
        )

    @_observing
    def rejected(self, kind: str) -> None:
        """An answer refused (``invalid_answer``, ``ungrounded_answer``, ``content_filter``),
        whether it is asked again or ends as the row's status."""
        self._i.errors.add(1, {**self.attributes, "error.type": kind})

    @_observing
    def cache(self, hits: int, misses: int) -> None:
        """One run's cache lookups (no record when the run looked nothing up)."""
        if hits + misses == 0:
            return
        self._i.cache_lookups.add(
            hits, {**self.attributes, "anomaly_assets.cache.hit": True}
        )
        self._i.cache_lookups.add(
            misses, {**self.attributes, "anomaly_assets.cache.hit": False}
        )
        self._i.cache_hit_ratio.set(hits / (hits + misses), self.attributes)


def call_metrics(
    provider: str, model: str, endpoint: str, prices
) -> CallMetrics | None:
    """The instruments for one explainer, or None when no endpoint is configured."""
    global _instruments
    if not enabled():
        return None
    meter_provider = _meter_provider()
    if meter_provider is None:
        return None
    with _lock:
        if _instruments is None:
            _instruments = _Instruments(meter_provider.get_meter(METER_NAME))
    return CallMetrics(_instruments, provider, model, endpoint, prices)
