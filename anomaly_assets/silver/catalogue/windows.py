"""The window machinery features share: per-user event-time windows over featurize's working
rows, and the measures several threat families read (the user's places, their typical values).

Working rows hold the batch's new events, the stored context rows the windows reach back
over, and the user's profile (``p_*`` columns) for everything older. ``_tail`` marks rows
after the profile's watermark: only those count in "earlier" sums, the profile holds the
rest. ``_new`` marks the batch's rows, ``_ts`` is event time in seconds.
"""

from pyspark.sql import Column, Window
from pyspark.sql import functions as F

from anomaly_assets.silver.event_exprs import failed_login
from anomaly_assets.silver.profile import HOUR_SCALE, LOG_SUMS, log_sum, log_term

#: A place (country, device, IP) stays new for this long after its first use.
NEW_PLACE_S = 3600
#: Least novelty of a new place: a new place always reads as one (risky access).
MIN_NOVELTY = 1e-3
#: Cap of the ratio features: a huge amount over a tiny mean stays finite.
MAX_RATIO = 1e6
#: The longest window a feature looks back over (distinct_countries_24h).
LONGEST_WINDOW_S = 24 * 3600


def ts() -> Column:
    return F.col("_ts")


def by_user():
    return Window.partitionBy("user_id")


def ordered():
    """The user's rows in event-time order, ties broken by Kafka position."""
    return by_user().orderBy("_ts", "topic", "partition", "offset")


def prior():
    """The user's rows before this one."""
    return ordered().rowsBetween(Window.unboundedPreceding, -1)


def last(seconds: int):
    """The user's rows of the last ``seconds``, this one included."""
    return by_user().orderBy("_ts").rangeBetween(-seconds, 0)


def events_in(seconds: int) -> Column:
    """Events by the user in the last ``seconds``, this one included."""
    return F.count(F.lit(1)).over(last(seconds))


def tail_only(expr: Column) -> Column:
    return F.when(F.col("_tail"), expr)


def earlier(agg, expr: Column) -> Column:
    """``agg`` of ``expr`` over the rows at hand before this one, beside the profile."""
    return F.coalesce(agg(tail_only(expr)).over(prior()), F.lit(0))


def hour_old(agg, expr: Column) -> Column:
    """``agg`` of ``expr`` over the user's rows an hour old or more, beside the profile:
    the batch's such rows, less the profile's rows of the last hour (they are at hand as
    context rows, which cover the last hour)."""
    before = (
        by_user().orderBy("_ts").rangeBetween(Window.unboundedPreceding, -NEW_PLACE_S)
    )
    up_to_now = by_user().orderBy("_ts").rangeBetween(Window.unboundedPreceding, 0)
    in_profile = ~F.col("_tail") & ~F.col("_new")

    def over(rows, window):
        return F.coalesce(agg(F.when(rows, expr)).over(window), F.lit(0))

    return (
        over(F.col("_tail"), before)
        - over(in_profile, up_to_now)
        + over(in_profile, before)
    )


def typical(log_column: str, hour_ago: bool = False) -> Column:
    """The user's typical earlier value: expm1 of the mean log1p (geometric mean), of
    every earlier event or, with ``hour_ago``, of those an hour old or more."""
    count, _, value = LOG_SUMS[log_column]
    rows = hour_old if hour_ago else earlier
    n = F.coalesce(f"p_{count}", F.lit(0)) + rows(F.count, value())
    logs = log_sum(log_column, "p_") + rows(F.sum, log_term(log_column))
    return F.when(n > 0, F.expm1(logs / HOUR_SCALE / n))


def capped_ratio(value: Column, typical_value: Column) -> Column:
    """``value`` / ``typical_value``: 1 without a typical value, capped at MAX_RATIO."""
    return F.when(typical_value.isNull() | (typical_value == 0), F.lit(1.0)).otherwise(
        F.least(value / typical_value, F.lit(MAX_RATIO))
    )


def previous() -> Column:
    """Time of the user's previous event: in the rows at hand, else the profile's last (if
    before this one)."""
    profile_last = F.when(
        F.col("p_last_event_time") <= F.col("event_time"),
        F.col("p_last_event_time").cast("double"),
    )
    return F.coalesce(F.lag("_ts").over(ordered()), profile_last)


def own_or_stored(value: Column, stored: Column) -> Column:
    """``value`` for a row computed now; a context row before the watermark keeps its
    stored value (computed against the history it had, which the profile has since
    absorbed)."""
    return F.when(F.col("_tail") | F.col("_new"), value).otherwise(stored)


# -- the user's places: events that were not failed logins -----------------------------------


def _place_one() -> Column:
    return tail_only(F.when(~failed_login(), F.lit(1)))


def _counted(entries) -> Column:
    return F.aggregate(entries, F.lit(0).cast("long"), lambda n, e: n + e["count"])


def places_at(profile_seen: str, value: str) -> Column:
    """The user's earlier places at ``value``: the profile's count plus the rows at hand
    before this one."""
    same = (
        Window.partitionBy("user_id", value)
        .orderBy("_ts", "topic", "partition", "offset")
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    return _counted(
        F.filter(profile_seen, lambda e: e["value"] == F.col(value))
    ) + F.count(_place_one()).over(same)


def places() -> Column:
    """The user's earlier places, all values."""
    return _counted(F.col("p_countries_seen")) + F.count(_place_one()).over(prior())


def country_share() -> Column:
    """Share of the user's earlier places in this event's country (NULL without any)."""
    everywhere = places()
    return F.when(everywhere > 0, places_at("p_countries_seen", "country") / everywhere)


def novelty(value: Column, profile_seen: Column) -> Column:
    """0 for a place known NEW_PLACE_S ago (so a session from a new IP stays new for its
    hour, not only at its first event); for a new one, -ln((places + 1) / (place events +
    2)) as of then: a new IP says little of a user who changes IPs often."""
    failed = failed_login()
    settled = ts() - NEW_PLACE_S
    before = (
        by_user().orderBy("_ts").rangeBetween(Window.unboundedPreceding, -NEW_PLACE_S)
    )
    # A user has places to compare with once their first place is NEW_PLACE_S old.
    first_place = F.least(
        F.array_min(F.transform("p_countries_seen", lambda e: e["first_seen"])).cast(
            "double"
        ),
        F.min(tail_only(F.when(~failed, ts()))).over(prior()),
    )
    has_places = F.coalesce(first_place <= settled, F.lit(False))
    place_events = F.coalesce(_counted(F.col("p_countries_seen")), F.lit(0)) + hour_old(
        F.count, F.when(~failed, F.lit(1))
    )
    place = tail_only(F.when(~failed, value))
    known = F.filter(profile_seen, lambda e: e["first_seen"].cast("double") <= settled)
    rows = F.collect_set(place).over(before)
    is_new = has_places & ~(
        F.exists(known, lambda e: e["value"] == value)
        | F.coalesce(F.array_contains(rows, value), F.lit(False))
    )
    none = F.array().cast("array<string>")
    seen = F.size(
        F.array_union(
            F.coalesce(F.transform(known, lambda e: e["value"]), none),
            F.coalesce(rows, none),
        )
    )
    surprise = -F.log((seen + 1) / (place_events + 2))
    return F.when(is_new, F.greatest(surprise, F.lit(MIN_NOVELTY))).otherwise(0.0)
