"""Group anomalies into patterns worth one LLM call each, rank them, and build the prompt data.

A pattern is (segment, the two strongest contributing features, sorted). Many anomalies of one
attack share it, so one call explains them all; a budget caps the calls per run, spending them
on patterns with a CRITICAL anomaly first, then on the largest and most severe.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from anomaly_assets.enrichment.redaction import redact_record
from anomaly_assets.gold.attack import DEFAULT_TECHNIQUES, technique_label
from anomaly_assets.silver.catalogue import THREAT_FEATURES
from anomaly_assets.silver.features import FEATURES

if TYPE_CHECKING:  # pandas loads when a run groups, not when the definitions load
    import pandas as pd

#: Event fields that may go into a prompt (after redaction); the rest never leave.
EXAMPLE_FIELDS = (
    "event_type",
    "event_time",
    "user_id",
    "session_id",
    "ip_address",
    "country",
    "device_type",
    "user_agent",
    "success",
    "amount",
    "items",
    "bytes_transferred",
    "duration_ms",
    "severity_percentile",
    "top_features",
)


@dataclass
class Group:
    key: str
    segment: str
    factors: tuple[str, ...]
    rows: "pd.DataFrame" = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def priority(self) -> float:
        """Size x severity: what a call is worth."""
        return self.size * float(self.rows["severity_percentile"].max())

    @property
    def critical(self) -> bool:
        return bool((self.rows["status"] == "CRITICAL").any())


def as_list(value) -> list:
    """Spark arrays arrive in pandas as numpy arrays, lists or None."""
    return [] if value is None else list(value)


def group_key(segment: str, top_features) -> tuple[str, tuple[str, ...]]:
    factors = tuple(sorted(as_list(top_features)[:2]))
    return f"{segment}|{','.join(factors)}", factors


def group_anomalies(
    anomalies: "pd.DataFrame", mode: str = "group", segment_column: str = "event_type"
) -> list[Group]:
    """Groups ranked for the budget: those with a CRITICAL anomaly first, then by
    priority (size x severity), highest first. ``mode='event'``: one group per anomaly."""
    groups: dict[str, Group] = {}
    keys, factor_sets = [], []
    for segment, tops, event_id in zip(
        anomalies[segment_column], anomalies["top_features"], anomalies["event_id"]
    ):
        key, factors = group_key(str(segment), tops)
        if mode == "event":
            key = f"event|{event_id}"
        keys.append(key)
        factor_sets.append(factors)
    frame = anomalies.assign(_key=keys, _factors=factor_sets)
    for key, rows in frame.groupby("_key", sort=False):
        first = rows.iloc[0]
        groups[key] = Group(
            key,
            str(first[segment_column]),
            first["_factors"],
            rows.drop(columns=["_key", "_factors"]),
        )
    return sorted(groups.values(), key=lambda g: (not g.critical, -g.priority, g.key))


def _mean_contributions(rows: "pd.DataFrame") -> dict[str, float]:
    totals: dict[str, float] = {}
    for contrib in rows["feature_contributions"]:
        for name, value in dict(contrib or {}).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return {name: round(total / len(rows), 5) for name, total in ranked[:6]}


def attack_of(factors, techniques) -> dict[str, list[str]]:
    """The threats ``factors`` (features) belong to, each with its ATT&CK techniques
    ("T1110.004 Brute Force: Credential Stuffing")."""
    threats = {
        t for t, features in THREAT_FEATURES.items() if set(features) & set(factors)
    }
    return {
        t: [technique_label(i) for i in techniques.get(t, ())] for t in sorted(threats)
    }


def prompt_payload(
    group: Group,
    drift: dict[str, list[str]],
    redact_columns: set[str],
    examples: int = 3,
    max_chars: int = 200,
    techniques=DEFAULT_TECHNIQUES,
) -> dict:
    """The JSON data the model sees for ``group``: aggregates, the threats its factors
    point to with their ATT&CK techniques, and a few redacted examples."""
    rows = group.rows.sort_values("severity_percentile", ascending=False)
    sample = []
    for record in rows.head(examples).to_dict("records"):
        record = {k: record.get(k) for k in EXAMPLE_FIELDS if k in record}
        record = {
            k: (v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in record.items()
        }
        if "top_features" in record:
            record["top_features"] = as_list(record["top_features"])
        sample.append(redact_record(record, redact_columns, max_chars))
    contributions = _mean_contributions(rows)
    batches = sorted(set(rows["batch_id"]))
    return {
        "segment": group.segment,
        "group_size": group.size,
        "severity_range": [
            round(float(rows["severity_percentile"].min()), 2),
            round(float(rows["severity_percentile"].max()), 2),
        ],
        "statuses": rows["status"].value_counts().to_dict(),
        "group_factors": list(group.factors),
        "attack": attack_of(group.factors, techniques),
        "top_contributions": contributions,
        "feature_definitions": FEATURES,
        "examples": sample,
        "drift": sorted({f for b in batches for f in drift.get(b, [])}),
    }
