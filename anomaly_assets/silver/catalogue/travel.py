"""Impossible travel: a login from a place the user could not have reached since their last."""

from pyspark.sql import functions as F

from anomaly_assets.silver.catalogue.feature import Feature
from anomaly_assets.silver.catalogue.windows import (
    country_share,
    last,
    own_or_stored,
    prior,
    ts,
)
from anomaly_assets.silver.event_exprs import failed_login
from anomaly_assets.silver.geo import distance_expr
from anomaly_assets.silver.profile import place_time

THREAT = "impossible_travel"
#: Travel counts into a country with less than this share of the user's places.
RARE_COUNTRY_SHARE = 0.05
#: Shortest gap travel_speed_kmh divides by: two events in the same second are not an
#: infinite speed.
MIN_TRAVEL_GAP_S = 60.0


def _speed():
    # Travel starts from the previous place that was not a failed login: in the rows at
    # hand, else the profile's.
    profile_place_time = place_time("p_")
    profile_place = F.when(
        profile_place_time <= F.col("event_time"), profile_place_time.cast("double")
    )
    place = F.last(
        F.when(
            ~failed_login(),
            F.struct(ts().alias("ts"), F.col("country").alias("country")),
        ),
        ignorenulls=True,
    ).over(prior())
    previous_country = F.when(place.isNotNull(), place["country"]).when(
        profile_place.isNotNull(), F.col("p_last_country")
    )
    place_gap = ts() - F.coalesce(place["ts"], profile_place)
    speed = F.when(
        F.coalesce(country_share(), F.lit(0.0)) < RARE_COUNTRY_SHARE,
        distance_expr(previous_country, F.col("country"))
        / (F.greatest(place_gap, F.lit(MIN_TRAVEL_GAP_S)) / 3600),
    )
    return F.coalesce(speed, F.lit(0.0))


def _fastest_arrival_1h():
    speed = own_or_stored(F.col("travel_speed_kmh"), F.col("_speed_stored"))
    # The last hour's jumps, to find those into this event's country.
    arrivals = F.collect_list(
        F.when(
            speed > 0, F.struct(F.col("country").alias("country"), speed.alias("speed"))
        )
    ).over(last(3600))
    return F.coalesce(
        F.array_max(
            F.transform(
                F.filter(arrivals, lambda e: e["country"] == F.col("country")),
                lambda e: e["speed"],
            )
        ),
        F.lit(0.0),
    )


FEATURES = (
    Feature(
        "travel_speed_kmh",
        "for an event from a country where the user rarely is (under 5 % of "
        "their places, see country_share): km between the centres of the country of the "
        "user's previous event that was not a failed login and this one's, per hour between "
        "them (gaps under a minute count as a minute); 0 otherwise (a usual country, an "
        "unplaced one, no previous event)",
        ("event_type", "success", "country"),
        _speed,
        log_scaled=True,
    ),
    Feature(
        "travel_speed_max_1h",
        "the highest travel_speed_kmh among the user's events of the "
        "last hour in this event's country: what follows an impossible jump is suspect too, "
        "going elsewhere after it is not",
        ("event_type", "success", "country"),
        _fastest_arrival_1h,
        stage=2,
        log_scaled=True,
    ),
)
