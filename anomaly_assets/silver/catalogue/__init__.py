"""The feature catalogue: each silver feature declared once, in the module of the threat it
serves (``behaviour`` for the ones no single threat owns).

Everything else is derived from it: the columns featurize writes and their comments, the
column lineage, each threat forest's features, the model's log scaling, the reference
docs' table and the LLM prompt's glossary. To add a feature, declare it in its family's
``FEATURES`` and append its name to ``COLUMN_ORDER``.
"""

from anomaly_assets.silver.catalogue import (
    behaviour,
    bots,
    exfiltration,
    purchases,
    stuffing,
    takeover,
    travel,
    windows,
)
from anomaly_assets.silver.catalogue.feature import Feature

#: Families in the order the threat forests are built and reported.
FAMILIES = (travel, stuffing, bots, exfiltration, takeover, purchases, behaviour)

#: The model's column order. New features go at the end: the order is part of the feature
#: fingerprint, which every trained model records.
COLUMN_ORDER = (
    "events_1m",
    "events_5m",
    "failed_logins_10m",
    "distinct_ips_1h",
    "distinct_countries_24h",
    "seconds_since_prev",
    "country_novelty",
    "device_novelty",
    "ip_novelty",
    "hour_of_day",
    "hour_deviation",
    "amount_vs_user_mean",
    "amount_log",
    "bytes_log",
    "bytes_vs_user_mean",
    "duration_ms_log",
    "travel_speed_kmh",
    "travel_speed_max_1h",
    "failed_login_ips_10m",
    "failed_login_ratio_10m",
    "events_10s",
    "gap_regularity_1m",
    "is_automation_agent",
    "bytes_1h_log",
    "transfer_1h_vs_typical",
    "value_after_risky_access",
    "items_log",
    "country_share",
    "device_rarity",
)


def in_column_order(features, order) -> tuple[Feature, ...]:
    """``features`` in ``order``; a name declared twice, or not exactly once in ``order``,
    stops the import with what to fix."""
    declared = {f.name: f for f in features}
    if len(declared) != len(features):
        twice = sorted(n for n in declared if sum(f.name == n for f in features) > 1)
        raise ValueError(f"features declared twice: {twice}")
    if set(declared) != set(order) or len(order) != len(declared):
        raise ValueError(
            "COLUMN_ORDER must name every declared feature once: "
            f"missing {sorted(set(declared) - set(order))}, "
            f"unknown {sorted(set(order) - set(declared))}"
        )
    return tuple(declared[name] for name in order)


CATALOGUE = in_column_order(
    [f for family in FAMILIES for f in family.FEATURES], COLUMN_ORDER
)
#: Feature name -> one-line definition, in column order.
FEATURES: dict[str, str] = {f.name: f.doc for f in CATALOGUE}
#: Feature -> the event columns it is computed from, besides user_id and event_time (every
#: feature is per user, in event-time order): the silver column lineage.
FEATURE_INPUTS: dict[str, tuple[str, ...]] = {f.name: f.inputs for f in CATALOGUE}
FEATURE_COLUMNS = tuple(FEATURES)
#: The named threats, each with the features that express it (its family's, in declaration
#: order).
THREAT_FEATURES: dict[str, tuple[str, ...]] = {
    family.THREAT: tuple(f.name for f in family.FEATURES)
    for family in FAMILIES
    if family.THREAT
}
LOG_FEATURES = tuple(f.name for f in CATALOGUE if f.log_scaled)
#: The constants the expressions compute with, in the order the feature fingerprint hashes
#: them.
CONSTANTS = (
    travel.RARE_COUNTRY_SHARE,
    windows.NEW_PLACE_S,
    takeover.RISKY_ACCESS_WINDOW_S,
    bots.AUTOMATION_AGENTS,
    takeover.VALUE_EVENTS,
    travel.MIN_TRAVEL_GAP_S,
    behaviour.MAX_GAP_S,
    windows.MAX_RATIO,
)
