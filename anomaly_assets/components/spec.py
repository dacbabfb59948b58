"""What one stream's ``defs.yaml`` declares: a strict model, so a typo is an error that
names its field, never a setting silently ignored.

Cross-field rules the schema alone cannot say are validators here: the contract must carry
the event fields a chosen feature is computed from (checked per list item, so the error points
at the feature's own line) and those its event types require. Names and ranges are part of
the schema (a feature of the library, percentiles in range, a prefix Dagster can name), so
editors catch them too. Plain pydantic, testable without Dagster; the component
(anomaly_pipeline.py) adds the file and line.
"""

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from anomaly_assets.alerts.settings import AlertsSpec
from anomaly_assets.contract import (
    EVENT_TYPES,
    OPTIONAL_FIELDS,
    REQUIRED_BY_EVENT_TYPE,
    REQUIRED_FIELDS,
)
from anomaly_assets.core.cursors import CURSOR_TABLE
from anomaly_assets.enrichment.assets import EnrichmentConfig
from anomaly_assets.evaluation.assets import EvalConfig
from anomaly_assets.gold import attack
from anomaly_assets.gold.assets import ScoringConfig
from anomaly_assets.gold.risk_asset import RiskConfig
from anomaly_assets.jobs import INGESTION_ASSETS
from anomaly_assets.model.assets import TrainConfig
from anomaly_assets.silver.features import FEATURE_INPUTS, FEATURES
from anomaly_assets.stream import Stream

#: Contract fields every stream carries: what identifies, orders, keys and places an
#: event (bronze requires them of every message); a stream chooses among the optional ones.
CORE_FIELDS = tuple(REQUIRED_FIELDS)
#: A key prefix part: a name Dagster accepts that is not a hidden folder of the lakehouse.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
#: What a stream's first key part cannot be: its tables would land inside the default
#: stream's table or cursor folders (<root>/<table>/...).
RESERVED_PREFIXES = (*INGESTION_ASSETS, "anomaly_model", CURSOR_TABLE)
CONTRACT_FIELDS = tuple(REQUIRED_FIELDS) + tuple(OPTIONAL_FIELDS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSpec(_Strict):
    """Where the events come from; unset settings are the kafka resource's."""

    topic: str = Field(min_length=1, description="The topic the stream reads.")
    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port list; unset: the kafka resource's (ANOMALY_KAFKA_BOOTSTRAP).",
    )
    max_batch_events: int | None = Field(
        default=None,
        ge=1,
        description="Most offsets one run reads; unset: the kafka resource's.",
    )
    read_committed: bool | None = Field(
        default=None,
        description="Read committed transactions only; unset: the resource's.",
    )

    def overrides(self) -> dict:
        """The kafka resource settings this stream sets."""
        return {
            k: v for k, v in self.model_dump(exclude={"topic"}).items() if v is not None
        }


class ContractSpec(_Strict):
    """What the events look like: a subset of the project's event contract."""

    fields: list[str] = Field(
        default=list(CONTRACT_FIELDS),
        description="Event fields of this stream (a subset of the project's contract; "
        f"always including {', '.join(CORE_FIELDS)}).",
    )
    event_types: list[str] = Field(
        default=list(EVENT_TYPES),
        min_length=1,
        description="Event types the stream carries.",
    )

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        unknown = [f for f in fields if f not in CONTRACT_FIELDS]
        if unknown:
            raise ValueError(
                f"unknown contract field(s) {unknown}; known: {list(CONTRACT_FIELDS)}"
            )
        missing = [f for f in CORE_FIELDS if f not in fields]
        if missing:
            raise ValueError(f"every stream carries {missing}")
        return fields

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event type(s) {unknown}; known: {list(EVENT_TYPES)}"
            )
        return types

    @model_validator(mode="after")
    def _fields_the_types_need(self) -> "ContractSpec":
        for event_type in self.event_types:
            needed = [
                f
                for f in REQUIRED_BY_EVENT_TYPE.get(event_type, ())
                if f not in self.fields
            ]
            if needed:
                raise ValueError(
                    f"event type {event_type!r} needs contract field(s) {needed}"
                )
        return self


def _like(config, name: str, **bounds):
    """A field with the default and description of ``config``'s (the step's own config),
    so the stream's settings and the launchpad's cannot drift apart."""
    field = config.model_fields[name]
    default = field.get_default(call_default_factory=True)
    return Field(default=default, description=field.description, **bounds)


class ModelSpec(_Strict):
    """The threat forests (Isolation Forests) and their quality gate (anomaly_model)."""

    n_estimators: int = _like(TrainConfig, "n_estimators", ge=10)
    max_samples: int = _like(TrainConfig, "max_samples", ge=16)
    seed: int = _like(TrainConfig, "seed")
    threshold_percentile: float = _like(
        TrainConfig, "threshold_percentile", gt=50, lt=100
    )
    min_roc_auc: float = _like(TrainConfig, "min_roc_auc", ge=0.5, le=1.0)
    max_left_out_share: float = _like(TrainConfig, "max_left_out_share", ge=0.0, le=0.5)
    label_stage: bool = _like(TrainConfig, "label_stage")
    min_labelled_incidents: int = _like(TrainConfig, "min_labelled_incidents", ge=4)
    label_held_out_share: float = _like(
        TrainConfig, "label_held_out_share", gt=0.0, lt=1.0
    )
    label_neighbours: int = _like(TrainConfig, "label_neighbours", ge=1)
    label_shift: float = _like(TrainConfig, "label_shift", ge=0.0)
    label_gate_alpha: float = _like(TrainConfig, "label_gate_alpha", gt=0.0, lt=1.0)


class SeveritySpec(_Strict):
    """Severity cut-offs of gold_anomaly_predictions."""

    critical_at: float = _like(ScoringConfig, "critical_at", gt=0, lt=100)


class RiskSpec(_Strict):
    """How a user's incidents add up to a risk score (gold_user_risk)."""

    window_days: float = _like(RiskConfig, "window_days", gt=0)
    half_life_days: float = _like(RiskConfig, "half_life_days", gt=0)


class EnrichmentSpec(_Strict):
    """How anomalies are explained (gold_events_enriched)."""

    provider: Literal["llm", "offline"] = Field(
        default="llm",
        description="llm: the project's LLM resource (Azure OpenAI, an OpenAI-compatible "
        "endpoint or offline, by environment); offline: templated explanations, no call.",
    )
    prompt_name: str = _like(EnrichmentConfig, "prompt_name")
    prompt_alias: str = _like(EnrichmentConfig, "prompt_alias")
    max_groups: int = _like(EnrichmentConfig, "max_groups", ge=0)
    redact_columns: list[str] = _like(EnrichmentConfig, "redact_columns")


class EvaluationSpec(_Strict):
    """How explanations are graded (ai_enrichment_eval_metrics)."""

    judges: bool = _like(EvalConfig, "judges")
    judge_max_calls: int = _like(EvalConfig, "judge_max_calls", ge=0)


#: A feature of the catalogue (silver/catalogue/).
FeatureName = Literal[tuple(FEATURES)]


def _fed_by_contract(feature: str, info: ValidationInfo) -> str:
    """A feature the stream's contract carries the event fields of (checked per item, so
    the error points at the item)."""
    contract = info.data.get("contract")
    if contract is None:  # the contract failed on its own; reported there
        return feature
    missing = [c for c in FEATURE_INPUTS[feature] if c not in contract.fields]
    if missing:
        raise ValueError(
            f"feature {feature!r} needs contract field(s) {missing}, which "
            "contract.fields leaves out"
        )
    return feature


class StreamSpec(_Strict):
    """One stream: where its events come from, what they look like, which features and
    model detect its anomalies, how they are explained and evaluated, and what its assets
    are called."""

    key_prefix: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        min_length=1,
        description="Asset key prefix of this stream's tables, also the prefix of its "
        "ops, jobs, sensor and registered model (['payments'] -> payments/silver_events, "
        "payments__ingest_job).",
    )
    group_prefix: str = Field(
        default="",
        pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$",
        description="Prefix of the asset groups (bronze, silver, gold, ai).",
    )
    kafka: KafkaSpec
    contract: ContractSpec = Field(default_factory=ContractSpec)
    features: list[Annotated[FeatureName, AfterValidator(_fed_by_contract)]] = Field(
        default=list(FEATURES),
        min_length=1,
        description="Features from the project's catalogue (silver/catalogue/); each "
        "feature's window is part of its definition (events_1m, bytes_1h_log, ...).",
    )
    model: ModelSpec = Field(default_factory=ModelSpec)
    severity: SeveritySpec = Field(default_factory=SeveritySpec)
    risk: RiskSpec = Field(default_factory=RiskSpec)
    attack: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Threat type -> MITRE ATT&CK technique ids, replacing the default's "
        "for the threats named; unset: the documented default for every threat (see "
        "docs/risk_and_attack.md; ids from the pinned list gold/attack_enterprise.json).",
    )
    enrichment: EnrichmentSpec = Field(default_factory=EnrichmentSpec)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)

    @field_validator("key_prefix")
    @classmethod
    def _not_a_table(cls, prefix: list[str]) -> list[str]:
        if prefix and prefix[0] in RESERVED_PREFIXES:
            raise ValueError(
                f"{prefix[0]!r} is a table or folder of the default stream; "
                "choose another name"
            )
        return prefix

    @field_validator("attack")
    @classmethod
    def _known_techniques(cls, mapping: dict) -> dict:
        attack.checked(mapping)
        return mapping

    @field_validator("features")
    @classmethod
    def _each_once(cls, features: list[str]) -> list[str]:
        if len(set(features)) != len(features):
            raise ValueError("a feature is listed twice")
        return features

    def to_stream(self) -> Stream:
        """The names and settings the asset factories build this stream from."""
        return Stream(
            key_prefix=tuple(self.key_prefix),
            group_prefix=self.group_prefix,
            topic=self.kafka.topic,
            kafka_settings=self.kafka.overrides(),
            features=tuple(self.features),
            event_types=tuple(self.contract.event_types),
            explainer=self.enrichment.provider,
            attack={t: tuple(ids) for t, ids in self.attack.items()},
            alerts=self.alerts.model_dump(mode="json") if self.alerts.channels else {},
            config_defaults={
                "anomaly_model": self.model.model_dump(),
                "gold": self.severity.model_dump(),
                "gold_user_risk": self.risk.model_dump(),
                "enrichment": self.enrichment.model_dump(exclude={"provider"}),
                "ai_enrichment_eval_metrics": self.evaluation.model_dump(),
            },
        )
