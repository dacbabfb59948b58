"""LLM resources with one interface: ``explainer()`` returns an object with ``probe()`` and
``explain(prompt, payload)`` (see enrichment/explainers.py).

Secrets only come from environment variables (``dagster.EnvVar``); nothing here logs them.
"""

import os
from contextlib import contextmanager

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from anomaly_assets.enrichment.explainers import OfflineExplainer, OpenAIExplainer
from anomaly_assets.enrichment.pricing import price_table
from anomaly_assets.enrichment.telemetry import call_metrics


class LLMResource(ConfigurableResource):
    """Settings shared by every explainer; subclasses say where the model lives."""

    timeout_s: float = Field(default=30.0, description="Per request.")
    max_retries: int = Field(
        default=3,
        description="Retries of a call on 429 (honouring Retry-After), 5xx, timeouts and "
        "dropped connections.",
    )
    max_retry_wait_s: float = Field(
        default=20.0,
        description="Longest Retry-After waited for; an endpoint asking for more fails the "
        "call at once, and a later run explains its rows.",
    )
    max_attempts: int = Field(
        default=2,
        description="Asks again on invalid JSON, schema violations and refusals.",
    )
    max_concurrency: int = Field(default=4, description="Requests in flight at once.")
    temperature: float = Field(default=0.0)
    prices: dict[str, list[float]] = Field(
        default_factory=dict,
        description="USD per million tokens [input, output] by model, on top of the list "
        "prices of enrichment/pricing.py: the cost in metrics, traces and the evaluation.",
    )

    def price_table(self) -> dict[str, tuple[float, float]]:
        return price_table(self.prices)

    @contextmanager
    def judge_endpoint(self, concurrency: int = 4):
        """The MLflow judge model URI for this endpoint (None: no model to judge with),
        with the variables MLflow's judge client reads set while it is used, and at most
        ``concurrency`` calls graded at once."""
        model, variables = self._judge_target()
        with _environ(MLFLOW_GENAI_EVAL_MAX_WORKERS=str(concurrency), **variables):
            yield model

    def _judge_target(self) -> tuple[str | None, dict[str, str | None]]:
        """(judge model URI, the variables MLflow's judge client reads for it)."""
        return None, {}

    def _openai_explainer(self, client, model: str, provider: str, endpoint: str):
        return OpenAIExplainer(
            client,
            model,
            provider,
            endpoint,
            self.max_attempts,
            self.temperature,
            max_retries=self.max_retries,
            max_retry_wait_s=self.max_retry_wait_s,
            metrics=call_metrics(provider, model, endpoint, self.price_table()),
        )


class AzureOpenAIResource(LLMResource):
    """Azure OpenAI through the official SDK's ``AzureOpenAI`` client."""

    endpoint: str = Field(description="https://<resource>.openai.azure.com")
    api_key: str = Field(description="Set from an environment variable (EnvVar).")
    api_version: str = Field(default="2024-10-21")
    deployment: str = Field(default="gpt-4.1-mini")

    def explainer(self) -> OpenAIExplainer:
        from openai import AzureOpenAI

        client = AzureOpenAI(
            azure_endpoint=self.endpoint,
            api_key=self.api_key,
            api_version=self.api_version,
            azure_deployment=self.deployment,
            timeout=self.timeout_s,
            max_retries=0,  # the explainer retries, within max_retry_wait_s
        )
        return self._openai_explainer(
            client, self.deployment, "azure_openai", self.endpoint
        )

    def _judge_target(self):
        variables = {
            "AZURE_API_KEY": self.api_key,
            "AZURE_API_BASE": self.endpoint,
            "AZURE_API_VERSION": self.api_version,
        }
        return f"azure:/{self.deployment}", variables


class OpenAICompatibleResource(LLMResource):
    """OpenAI itself, or any OpenAI-compatible server (vLLM, Ollama, LM Studio) by base_url."""

    base_url: str = Field(default="https://api.openai.com/v1")
    api_key: str = Field(
        default="not-needed", description="Set with EnvVar when required."
    )
    model: str = Field(default="gpt-4.1-mini")

    def explainer(self) -> OpenAIExplainer:
        from openai import OpenAI

        client = OpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=self.timeout_s,
            max_retries=0,  # the explainer retries, within max_retry_wait_s
        )
        return self._openai_explainer(
            client, self.model, "openai_compatible", self.base_url
        )

    def _judge_target(self):
        variables = {
            "OPENAI_BASE_URL": self.base_url,
            "OPENAI_API_KEY": self.api_key,
            # it would win over OPENAI_BASE_URL in MLflow's judge client
            "OPENAI_API_BASE": None,
        }
        return f"openai:/{self.model}", variables


class OfflineExplainerResource(LLMResource):
    """No endpoint configured: deterministic explanations that say they are offline."""

    def explainer(self) -> OfflineExplainer:
        return OfflineExplainer()


def for_stream(stream, resource: LLMResource) -> LLMResource:
    """The LLM resource, or the offline explainer for a stream that calls no LLM."""
    return OfflineExplainerResource() if stream.explainer == "offline" else resource


@contextmanager
def _environ(**values: str | None):
    """Environment variables set (None: removed) for the duration, then restored. MLflow's
    model catalogue lookup is switched off too, unless configured: offline it retries
    github.com for seconds per run."""
    values.setdefault(
        "MLFLOW_MODEL_CATALOG_URI", os.environ.get("MLFLOW_MODEL_CATALOG_URI", "")
    )
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def llm_from_env() -> LLMResource:
    """Azure when AZURE_OPENAI_ENDPOINT is set, an OpenAI-compatible endpoint when
    OPENAI_BASE_URL or OPENAI_API_KEY is, otherwise the offline explainer."""
    if os.environ.get("AZURE_OPENAI_ENDPOINT"):
        return AzureOpenAIResource(
            endpoint=EnvVar("AZURE_OPENAI_ENDPOINT"),
            api_key=EnvVar("AZURE_OPENAI_API_KEY"),
            deployment=os.environ.get("AZURE_OPENAI_DEPLOYMENT", "gpt-4.1-mini"),
            api_version=os.environ.get("AZURE_OPENAI_API_VERSION", "2024-10-21"),
        )
    if os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"):
        return OpenAICompatibleResource(
            base_url=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
            api_key=EnvVar("OPENAI_API_KEY")
            if os.environ.get("OPENAI_API_KEY")
            else "not-needed",
            model=os.environ.get("OPENAI_MODEL", "gpt-4.1-mini"),
        )
    return OfflineExplainerResource()
