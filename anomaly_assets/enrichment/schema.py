"""The structured output every explainer must produce, validated by Pydantic.

Two views of one model. ``AnomalyExplanation`` carries the limits (lengths, the confidence
range, one to three factors) and checks every answer after parsing. ``RESPONSE_FORMAT`` is
what goes to the endpoint: the strictest JSON Schema subset that OpenAI, Azure OpenAI and
OpenAI-compatible servers all accept in strict mode: every property required,
``additionalProperties: false`` on every object, types, enums and descriptions, and none
of the length, range or size keywords (some endpoints answer those with a 400).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from anomaly_assets.silver.features import FEATURE_COLUMNS

FeatureName = Literal[FEATURE_COLUMNS]  # type: ignore[valid-type]
RiskLevel = Literal["low", "medium", "high", "critical"]
RISK_LEVELS: tuple[str, ...] = RiskLevel.__args__


class AnomalyExplanation(BaseModel):
    """One explanation of an anomaly pattern (a group of similar anomalies, or one event)."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(
        max_length=400, description="What happened, in one or two sentences."
    )
    user_intent: str = Field(
        max_length=200, description="The most likely intent behind the activity."
    )
    risk_level: RiskLevel
    risk_explanation: str = Field(max_length=600, description="Why this risk level.")
    confidence: float = Field(
        ge=0.0, le=1.0, description="Confidence in this explanation, from 0 to 1."
    )
    top_factors: list[FeatureName] = Field(
        min_length=1,
        max_length=3,
        description="One to three features that drove the anomaly, strongest first.",
    )
    recommended_action: str = Field(
        max_length=300, description="What an analyst should do."
    )


#: Keywords left out of the schema sent: Pydantic enforces them on the answer instead.
CONSTRAINT_KEYWORDS = frozenset(
    {
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "default",
        "if",
        "then",
        "else",
        "not",
    }
)


def strict_schema(node):
    """``node`` (a JSON Schema) in the strict subset: constraint keywords dropped, every
    object closed and every one of its properties required."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in CONSTRAINT_KEYWORDS:
            continue
        if key in ("properties", "$defs"):  # names -> schemas, not keywords
            out[key] = {name: strict_schema(s) for name, s in value.items()}
        else:
            out[key] = strict_schema(value)
    if out.get("type") == "object" or "properties" in out:
        out["additionalProperties"] = False
        out["required"] = list(out.get("properties", {}))
    return out


RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": AnomalyExplanation.__name__,
        "strict": True,
        "schema": strict_schema(AnomalyExplanation.model_json_schema()),
    },
}
