"""Where the events come from: the Kafka cluster and topic, as configuration only."""

from dagster import ConfigurableResource
from pydantic import Field

from anomaly_assets import settings
from anomaly_assets.ingestion.sensor_state import RetryPolicy


class KafkaResource(ConfigurableResource):
    """Connection settings shared by the offsets sensor and the bronze reader."""

    bootstrap_servers: str = Field(default=settings.KAFKA_BOOTSTRAP_SERVERS)
    topic: str = Field(default=settings.KAFKA_TOPIC)
    request_timeout_s: float = Field(
        default=3.0, description="Metadata and offset look-ups give up after this long."
    )
    max_batch_events: int = Field(
        default=settings.MAX_BATCH_EVENTS,
        description="Most offsets one ingestion run reads (env ANOMALY_MAX_BATCH_EVENTS).",
    )
    max_runs_per_tick: int = Field(
        default=10,
        description="Most runs one sensor tick requests; the rest waits a tick.",
    )
    max_pending_batches: int = Field(
        default=20,
        description="Most batches in flight or waiting to retry; the sensor plans no new "
        "batch beyond this (backpressure when runs fail or queue up).",
    )
    max_attempts: int = Field(
        default=5, description="Runs per batch before the sensor gives up on it."
    )
    retry_base_delay_s: float = Field(
        default=settings.RETRY_BASE_DELAY_S,
        description="Backoff before the 2nd attempt; doubles per attempt up to an hour "
        "(env ANOMALY_RETRY_BASE_DELAY_S).",
    )
    read_committed: bool = Field(
        default=True,
        description="Read only committed transactions (the sensor's end offsets are then "
        "the last stable offset); aborted records and markers become ledger skips.",
    )
    extra_config: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka / Spark kafka.* client settings (e.g. security.protocol).",
    )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts, base_delay_s=self.retry_base_delay_s
        )

    def client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap_servers, **self.extra_config}
