"""The structured output every explainer must produce, validated by Pydantic.

The same model is sent to the API as a strict JSON schema (``response_format``) and checked
again on the way back; ``top_factors`` may only name the model's own features.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from anomaly_assets.lib.features import FEATURE_COLUMNS

FeatureName = Literal[FEATURE_COLUMNS]  # type: ignore[valid-type]
RiskLevel = Literal["low", "medium", "high", "critical"]


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
        ge=0.0, le=1.0, description="Confidence in this explanation."
    )
    top_factors: list[FeatureName] = Field(
        min_length=1, max_length=3, description="The features that drove the anomaly."
    )
    recommended_action: str = Field(
        max_length=300, description="What an analyst should do."
    )
