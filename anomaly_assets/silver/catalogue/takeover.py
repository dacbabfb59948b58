"""Account takeover: a way in from a device, country or address the user does not use,
then cashing in soon after."""

from pyspark.sql import functions as F

from anomaly_assets.silver.catalogue.feature import Feature
from anomaly_assets.silver.catalogue.windows import (
    last,
    novelty,
    own_or_stored,
    places,
    places_at,
)

THREAT = "account_takeover"
#: Window of value_after_risky_access: a takeover cashes in soon after getting in.
RISKY_ACCESS_WINDOW_S = 15 * 60
#: Events whose value a takeover is after (value_after_risky_access).
VALUE_EVENTS = ("purchase", "file_download")


def risky_access():
    """Column: a password reset, or a successful login from a new device, country or IP
    (of rows that carry the *_novelty features)."""
    new_place = (
        (F.col("device_novelty") > 0)
        | (F.col("country_novelty") > 0)
        | (F.col("ip_novelty") > 0)
    )
    login = (F.col("event_type") == "login") & F.coalesce(F.col("success"), F.lit(True))
    return F.coalesce(
        (F.col("event_type") == "password_reset") | (login & new_place), F.lit(False)
    )


def _value_after_risky_access():
    risky = own_or_stored(risky_access(), F.coalesce("_risky_stored", F.lit(False)))
    recent = F.max(risky.cast("int")).over(last(RISKY_ACCESS_WINDOW_S)) > 0
    return (
        F.col("event_type").isin(*VALUE_EVENTS) & F.coalesce(recent, F.lit(False))
    ).cast("int")


def _device_rarity():
    # The share of places as a surprisal: a device seen on a handful of a user's hundreds
    # of places is as telling as a new one.
    everywhere = places()
    on_device = places_at("p_devices_seen", "_device")
    return F.when(everywhere > 0, -F.log((on_device + 1) / (everywhere + 2))).otherwise(
        F.lit(0.0)
    )


FEATURES = (
    Feature(
        "value_after_risky_access",
        "1 for a purchase or download within 15 minutes after the "
        "user's password reset or login from a new device, country or IP",
        ("event_type", "success", "country", "ip_address", "device_type", "user_agent"),
        _value_after_risky_access,
        stage=2,
    ),
    Feature(
        "device_novelty",
        "as country_novelty, for the device type and user agent",
        ("event_type", "success", "device_type", "user_agent"),
        lambda: novelty(F.col("_device"), F.col("p_devices_seen")),
    ),
    Feature(
        "ip_novelty",
        "as country_novelty, for the IP address",
        ("event_type", "success", "ip_address"),
        lambda: novelty(F.col("ip_address"), F.col("p_ips_seen")),
    ),
    Feature(
        "device_rarity",
        "how rarely the user is on this event's device (type and user agent): "
        "-ln((earlier places on it + 1) / (earlier places + 2)), places as for country_share "
        "(0 without history); unlike device_novelty it stays high for a device seen only a "
        "few times, such as an attacker's second visit",
        ("event_type", "success", "device_type", "user_agent"),
        _device_rarity,
    ),
)
