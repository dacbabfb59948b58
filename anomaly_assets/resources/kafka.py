"""Where the events come from: the Kafka cluster and topic, as configuration only."""

from dagster import ConfigurableResource
from pydantic import Field

from anomaly_assets import settings


class KafkaResource(ConfigurableResource):
    """Connection settings shared by the offsets sensor and the bronze reader."""

    bootstrap_servers: str = Field(default=settings.KAFKA_BOOTSTRAP_SERVERS)
    topic: str = Field(default=settings.KAFKA_TOPIC)
    request_timeout_s: float = Field(
        default=3.0, description="Metadata and offset look-ups give up after this long."
    )
    max_batch_events: int = Field(
        default=100_000, description="Most offsets one ingestion run reads."
    )
    max_runs_per_tick: int = Field(
        default=10,
        description="Most runs one sensor tick requests; the rest waits a tick.",
    )
    extra_config: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka / Spark kafka.* client settings (e.g. security.protocol).",
    )

    def client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap_servers, **self.extra_config}
