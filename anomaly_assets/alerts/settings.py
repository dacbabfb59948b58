"""What a stream's ``alerts:`` section says: channels, routes, limits, snoozes and
suppressions. A strict model, so a mistake names its field (``dg check``), and secrets are
only ever the names of environment variables, read when an alert is sent.
"""

import fnmatch
import ipaddress
import os
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from anomaly_assets.feedback.patterns import Learning
from anomaly_assets.feedback.precision import Tuning
from anomaly_assets.gold.incidents import STATUSES
from anomaly_assets.gold.risk import LEVEL_ORDER
from anomaly_assets.silver.catalogue import THREAT_FEATURES

ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def secret(env: str | None) -> str | None:
    """The value of the environment variable ``env`` (None when unset or unnamed)."""
    return os.environ.get(env) if env else None


class SlackChannel(_Strict):
    """Slack: the Web API (``chat.postMessage``; updates as thread replies, and a message
    left unconfirmed by a killed run is found again by its key) with ``token_env`` and
    ``channel``, or an incoming webhook (``webhook_url_env``; updates as new messages)."""

    type: Literal["slack"]
    token_env: str | None = Field(default=None, pattern=ENV_NAME)
    channel: str | None = Field(default=None, description="Channel id or #name.")
    webhook_url_env: str | None = Field(default=None, pattern=ENV_NAME)
    base_url: str = Field(
        default="https://slack.com/api/", description="The Web API's base URL."
    )
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> "SlackChannel":
        web_api = self.token_env is not None
        if web_api == (self.webhook_url_env is not None):
            raise ValueError("set either token_env (with channel) or webhook_url_env")
        if web_api and not self.channel:
            raise ValueError("the Web API (token_env) needs a channel")
        return self


class WebhookChannel(_Strict):
    """A JSON POST signed with HMAC-SHA256 over ``<timestamp>.<body>`` (headers
    ``X-Anomaly-Timestamp``, ``X-Anomaly-Signature: v1=<hex>``), with the alert's key in
    ``Idempotency-Key``."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    secret_env: str = Field(pattern=ENV_NAME)
    timeout_s: float = Field(default=10.0, gt=0)


class PagerDutyChannel(_Strict):
    """PagerDuty Events API v2: trigger, then resolve when the incident closes, with the
    incident id as ``dedup_key``."""

    type: Literal["pagerduty"]
    routing_key_env: str = Field(pattern=ENV_NAME)
    url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        pattern=r"^https://",
        description="The Events API's enqueue URL (HTTPS only, as PagerDuty's client "
        "requires); another service region's, or a proxy's.",
    )
    timeout_s: float = Field(default=10.0, gt=0)


class EmailChannel(_Strict):
    """Email over SMTP, upgraded with STARTTLS unless ``starttls`` is false."""

    type: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    username_env: str | None = Field(default=None, pattern=ENV_NAME)
    password_env: str | None = Field(default=None, pattern=ENV_NAME)
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _login_pair(self) -> "EmailChannel":
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("set both username_env and password_env, or neither")
        return self


Channel = Annotated[
    SlackChannel | WebhookChannel | PagerDutyChannel | EmailChannel,
    Field(discriminator="type"),
]
ThreatType = Literal[tuple(THREAT_FEATURES)]


class Route(_Strict):
    """Which alerts go to which channels."""

    channels: list[str] = Field(min_length=1)
    min_status: Literal[STATUSES] = Field(
        default="CRITICAL", description="Incidents from this status up."
    )
    min_risk_level: Literal[LEVEL_ORDER] = Field(
        default="high",
        description="Risk alerts from this level up (a user's risk crossing it).",
    )
    threat_types: list[ThreatType] | None = Field(
        default=None, description="Only incidents with one of these; unset: any."
    )


class Snooze(_Strict):
    """No alert for matching incidents until ``until``."""

    until: datetime
    users: list[str] = Field(default_factory=list, description="fnmatch patterns.")
    threat_types: list[ThreatType] = Field(default_factory=list)
    reason: str = ""

    @model_validator(mode="after")
    def _says_what(self) -> "Snooze":
        if not self.users and not self.threat_types:
            raise ValueError("a snooze names users or threat types")
        if self.until.tzinfo is None:
            raise ValueError("give until a time zone (2026-12-31T00:00:00Z)")
        return self


class Suppression(_Strict):
    """Alerts that are known false positives, for as long as the rule stands: a service
    account, or a user's known VPN egress (their incidents from these networks)."""

    reason: str = Field(min_length=1)
    users: list[str] = Field(default_factory=list, description="fnmatch patterns.")
    networks: list[str] = Field(
        default_factory=list, description="CIDRs the incident's events come from."
    )
    threat_types: list[ThreatType] = Field(default_factory=list)

    @field_validator("networks")
    @classmethod
    def _cidrs(cls, networks: list[str]) -> list[str]:
        for n in networks:
            ipaddress.ip_network(n, strict=False)
        return networks

    @model_validator(mode="after")
    def _says_what(self) -> "Suppression":
        if not (self.users or self.networks or self.threat_types):
            raise ValueError("a suppression names users, networks or threat types")
        return self


class Operations(_Strict):
    """Where a failed run, a failed blocking check or a stalled stream is told, and how
    fresh the stream's gold tables are expected to be (a Dagster ``FreshnessPolicy``)."""

    channels: list[str] = Field(
        default_factory=list,
        description="Channels told of failed runs and stale gold tables; none: the "
        "freshness policy still shows in the UI, nobody is told.",
    )
    stale_after_minutes: int | None = Field(
        default=60,
        ge=1,
        description="The gold tables fail their freshness policy when not refreshed "
        "for this long; null: no policy (a stream quiet for hours by nature).",
    )
    warn_after_minutes: int | None = Field(
        default=None, ge=1, description="Shown as WARN in the UI after this long."
    )
    retry_delay_s: float = Field(
        default=30.0,
        gt=0,
        description="First retry of a failed send; each next one waits twice as long "
        "(max_attempts in all).",
    )

    @model_validator(mode="after")
    def _windows(self) -> "Operations":
        warn, fail = self.warn_after_minutes, self.stale_after_minutes
        if warn is not None and (fail is None or warn >= fail):
            raise ValueError("warn_after_minutes must be below stale_after_minutes")
        return self


class AlertsSpec(_Strict):
    """Where the stream's alerts go and what keeps them quiet (docs/alerts.md); no
    channels: no alerts."""

    channels: dict[str, Channel] = Field(
        default_factory=dict,
        description="Name -> channel (type slack, webhook, pagerduty or email).",
    )
    routes: list[Route] = Field(
        default_factory=list,
        description="Which incidents and risk levels go to which channels.",
    )
    rate_limit_per_hour: int = Field(
        default=30, ge=1, description="Most alerts a channel receives in any hour."
    )
    max_attempts: int = Field(
        default=5, ge=1, description="Sends tried, across runs, before an alert fails."
    )
    snoozes: list[Snooze] = Field(
        default_factory=list, description="Users or threat types quiet until a time."
    )
    suppressions: list[Suppression] = Field(
        default_factory=list,
        description="Known false positives: service accounts, a user's VPN egress.",
    )
    tuning: Tuning = Field(
        default_factory=Tuning,
        description="Per threat type thresholds from analysts' answers.",
    )
    learning: Learning = Field(
        default_factory=Learning,
        description="Patterns of false positives learned from dismissals across users.",
    )
    operations: Operations = Field(
        default_factory=Operations,
        description="Failed runs, failed blocking checks and stale gold tables.",
    )
    dagster_url: str = Field(
        default="http://127.0.0.1:3000", description="Links to the asset pages."
    )
    mlflow_url: str = Field(
        default="http://127.0.0.1:5000", description="Links to the MLflow traces."
    )

    @model_validator(mode="after")
    def _routes_name_channels(self) -> "AlertsSpec":
        for route in [*self.routes, self.operations]:
            unknown = [c for c in route.channels if c not in self.channels]
            if unknown:
                raise ValueError(
                    f"route to unknown channel(s) {unknown}; channels: "
                    f"{sorted(self.channels)}"
                )
        return self


def matches(patterns: list[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)
