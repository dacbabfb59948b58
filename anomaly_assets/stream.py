"""One stream's names and settings: what the asset factories need to build a pipeline.

The default stream (``DEFAULT_STREAM``) has no key prefix, so its assets, ops, jobs, sensor,
pools, cursors and registered model keep the names they always had. A stream declared in a
``defs.yaml`` (components/spec.py) gets them under its key prefix: tables at
``<root>/<prefix>/<table>``, ops and jobs named ``<prefix>__<name>``, its own sensor cursor,
consumer cursors, writer pools, ingestion lane and registered model.
"""

from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, AssetOut, Config
from pydantic import create_model

from anomaly_assets.contract import EVENT_TYPES


@dataclass(frozen=True)
class Stream:
    key_prefix: tuple[str, ...] = ()
    group_prefix: str = ""
    #: None: the kafka resource's (ANOMALY_KAFKA_TOPIC); the default stream keeps it.
    topic: str | None = None
    #: Kafka resource settings this stream overrides (bootstrap_servers, ...).
    kafka_settings: Mapping[str, Any] = field(default_factory=dict)
    #: None: every feature of silver's catalogue (``silver.features.stream_features``).
    features: tuple[str, ...] | None = None
    event_types: tuple[str, ...] = EVENT_TYPES
    #: "llm": the project's LLM resource; "offline": templated explanations, no LLM call.
    explainer: str = "llm"
    #: Threat type -> ATT&CK technique ids replacing the default's (gold/attack.py).
    attack: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The stream's alerts: section as data (alerts/settings.py AlertsSpec); empty: the
    #: file ANOMALY_ALERTS_FILE names, if any.
    alerts: Mapping[str, Any] = field(default_factory=dict)
    #: Config defaults by op (short name): {"anomaly_model": {"threshold_percentile": 99}}.
    config_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """ "" for the default stream, else the key prefix joined by "__"."""
        return "__".join(self.key_prefix)

    def key(self, table: str) -> AssetKey:
        return AssetKey([*self.key_prefix, table])

    def named(self, name: str) -> str:
        """An op, job, sensor or schedule name, unique across streams."""
        return f"{self.name}__{name}" if self.name else name

    def group(self, name: str) -> str:
        return f"{self.group_prefix}{name}"

    def table_out(
        self, layer: str, owner: str, kinds: set[str], description: str, metadata: dict
    ) -> AssetOut:
        """A multi-asset's output that writes one of this stream's tables: its key under the
        stream's prefix, in ``layer``'s group and tagged with it, owned by ``owner``."""
        return AssetOut(
            key_prefix=list(self.key_prefix),
            group_name=self.group(layer),
            tags={"layer": layer},
            kinds=kinds,
            owners=[owner],
            description=description,
            metadata=metadata,
        )

    def pool(self, table: str) -> str:
        """The writer pool of the step that writes ``table``: one writer at a time."""
        return f"anomaly_assets/{self.named(table)}"

    @property
    def lane(self) -> dict[str, str]:
        """Run tag of ingestion runs: one at a time per stream (dagster.yaml)."""
        return {"anomaly_assets/lane": self.named("ingestion")}

    def lakehouse(self, resource):
        """The lakehouse with this stream's tables and cursors under its key prefix."""
        return resource.under(*self.key_prefix)

    def kafka(self, resource):
        """The Kafka resource pointed at this stream's topic and settings."""
        updates = dict(self.kafka_settings)
        if self.topic is not None:
            updates["topic"] = self.topic
        return _replaced(resource, **updates) if updates else resource

    def mlflow(self, resource):
        """The MLflow settings with this stream's registered model."""
        if not self.name:
            return resource
        name = self.named(resource.registered_model_name)
        return _replaced(resource, registered_model_name=name)

    def config(self, base: type[Config], op: str) -> type[Config]:
        """``base`` with this stream's defaults for ``op``, shown in the launchpad."""
        defaults = self.config_defaults.get(op)
        if not defaults:
            return base
        fields = {}
        for name, value in defaults.items():
            field_info = copy(base.model_fields[name])  # keeps description and bounds
            field_info.default, field_info.default_factory = value, None
            fields[name] = (field_info.annotation, field_info)
        prefix = "".join(p.title().replace("_", "") for p in self.key_prefix)
        return create_model(f"{prefix}{base.__name__}", __base__=base, **fields)


def _replaced(resource, **updates):
    """A copy of a configured resource (no nested resources) with some settings replaced."""
    current = {name: getattr(resource, name) for name in type(resource).model_fields}
    return type(resource)(**{**current, **updates})


DEFAULT_STREAM = Stream()
