"""The user's general behaviour: pace, places and hours. No threat forest reads these alone;
the forest over every feature does, and several describe an incident to the analyst."""

import math

from pyspark.sql import functions as F

from anomaly_assets.silver.catalogue.feature import Feature
from anomaly_assets.silver.catalogue.windows import (
    LONGEST_WINDOW_S,
    country_share,
    earlier,
    events_in,
    last,
    novelty,
    previous,
    ts,
)
from anomaly_assets.silver.event_exprs import failed_login
from anomaly_assets.silver.profile import HOUR_SCALE, hour_terms

THREAT = None
#: Cap of seconds_since_prev.
MAX_GAP_S = 7 * 24 * 3600


def _countries_24h():
    recent = F.collect_set(F.when(~failed_login(), F.col("country")))
    return F.size(
        F.array_union(
            recent.over(last(LONGEST_WINDOW_S)), F.array_compact(F.array("country"))
        )
    )


def _seconds_since_prev():
    return F.least(
        F.coalesce(ts() - previous(), F.lit(MAX_GAP_S)), F.lit(MAX_GAP_S)
    ).cast("double")


def _hour_deviation():
    sin, cos = hour_terms()
    sin_sum = F.coalesce("p_hour_sin_e9", F.lit(0)) + earlier(F.sum, sin)
    cos_sum = F.coalesce("p_hour_cos_e9", F.lit(0)) + earlier(F.sum, cos)
    prior_events = F.coalesce("p_events", F.lit(0)) + earlier(F.count, F.lit(1))
    mean_hour = (
        F.atan2(sin_sum / HOUR_SCALE, cos_sum / HOUR_SCALE) * (24 / (2 * math.pi)) + 24
    ) % 24
    gap = F.abs(F.col("hour_of_day") - mean_hour)
    return (
        F.when(prior_events > 0, F.least(gap, 24 - gap))
        .otherwise(F.lit(0.0))
        .cast("double")
    )


FEATURES = (
    Feature(
        "events_5m",
        "events by the user in the 5 minutes up to and including this one",
        (),
        lambda: events_in(300),
        log_scaled=True,
    ),
    Feature(
        "distinct_ips_1h",
        "distinct IP addresses the user used in the last hour",
        ("ip_address",),
        lambda: F.size(F.collect_set("ip_address").over(last(3600))),
    ),
    Feature(
        "distinct_countries_24h",
        "distinct countries of the user's last 24 hours: this event's "
        "and those of the other events that were not failed logins",
        ("event_type", "success", "country"),
        _countries_24h,
    ),
    Feature(
        "seconds_since_prev",
        "seconds since the user's previous event (capped at 7 days)",
        (),
        _seconds_since_prev,
        log_scaled=True,
    ),
    Feature(
        "country_novelty",
        "0 if the country was among the user's places an hour ago (places: "
        "those of the user's events that were not failed logins) or the user has none that "
        "old; else how rarely the user shows a new place: -ln((distinct countries + 1) / "
        "(place events + 2)), both as of an hour ago",
        ("event_type", "success", "country"),
        lambda: novelty(F.col("country"), F.col("p_countries_seen")),
    ),
    Feature(
        "hour_of_day",
        "hour of the event in UTC",
        (),
        lambda: F.hour("event_time"),
        stage=0,
    ),
    Feature(
        "hour_deviation",
        "circular distance in hours from the user's usual hour (0 without history)",
        (),
        _hour_deviation,
    ),
    Feature(
        "country_share",
        "share of the user's earlier places (events that were not failed "
        "logins) in this event's country (1 without history)",
        ("event_type", "success", "country"),
        lambda: F.coalesce(country_share(), F.lit(1.0)),
    ),
)
