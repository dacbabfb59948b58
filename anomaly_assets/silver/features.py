"""Silver: typed events plus per-user behaviour features that reach back into earlier batches.

``featurize(new, context, profile, watermark)`` computes features for the ``new`` bronze rows
from bounded state: each user's profile (every event before the ``watermark``, folded into
counts, sums and capped sets; see ``silver/profile.py``) plus the ``context`` silver rows the
windows need (the last 24 hours before the batch and everything after the watermark). It
also returns the context rows a new, earlier event changes, so an out-of-order event
corrects the rows after it. Windows are on event time, per user: how the stream was cut
into batches changes no value, as long as no event is later than the allowed lateness.

Sums that feed a mean are exact (decimals and integers, circular hours as fixed-point
sin/cos sums), so the profile's part and the recent part add up to the same value whatever
the split.
"""

import hashlib
import json
import math

from anomaly_assets.silver.event_exprs import device_expr, failed_login

#: Feature name -> one-line definition. The model uses exactly these columns, in this order.
FEATURES: dict[str, str] = {
    "events_1m": "events by the user in the minute up to and including this one",
    "events_5m": "events by the user in the 5 minutes up to and including this one",
    "failed_logins_10m": "for a login: the user's failed logins in the last 10 minutes, this "
    "one included (0 for other events)",
    "distinct_ips_1h": "distinct IP addresses the user used in the last hour",
    "distinct_countries_24h": "distinct countries of the user's last 24 hours: this event's "
    "and those of the other events that were not failed logins",
    "seconds_since_prev": "seconds since the user's previous event (capped at 7 days)",
    "country_novelty": "0 if the country was among the user's places an hour ago (places: "
    "those of the user's events that were not failed logins) or the user has none that old; "
    "else how rarely the user shows a new place: -ln((distinct countries + 1) / (place "
    "events + 2)), both as of an hour ago",
    "device_novelty": "as country_novelty, for the device type and user agent",
    "ip_novelty": "as country_novelty, for the IP address",
    "hour_of_day": "hour of the event in UTC",
    "hour_deviation": "circular distance in hours from the user's usual hour (0 without history)",
    "amount_vs_user_mean": "purchase amount / the user's typical earlier purchase (their "
    "geometric mean: expm1 of the mean log1p; 1 if none; "
    "0 for other events; capped at 1e6)",
    "amount_log": "log1p of the purchase amount (0 for other events)",
    "bytes_log": "log1p of bytes transferred (0 when the event moves no data)",
    "bytes_vs_user_mean": "bytes transferred / the user's typical transfer of an hour "
    "before (the geometric mean of their transfers at least an hour old: expm1 of the mean "
    "log1p; 1 if none; 0 when no data; capped at 1e6): a burst does not raise its own "
    "baseline",
    "duration_ms_log": "log1p of the event's duration in milliseconds",
    # What each named threat looks like (docs: the threat each one serves).
    "travel_speed_kmh": "for an event from a country where the user rarely is (under 5 % of "
    "their places, see country_share): km between the centres of the country of the "
    "user's previous event that was not a failed login and this one's, per hour between "
    "them (gaps under a minute count as a minute); 0 otherwise (a usual country, an "
    "unplaced one, no previous event)",
    "travel_speed_max_1h": "the highest travel_speed_kmh among the user's events of the "
    "last hour in this event's country: what follows an impossible jump is suspect too, "
    "going elsewhere after it is not",
    "failed_login_ips_10m": "for a login: distinct IP addresses of the user's failed logins "
    "in the last 10 minutes (0 for other events)",
    "failed_login_ratio_10m": "for a login: failed logins / (logins + 1) by the user in the "
    "last 10 minutes, shrunk so one mistyped password is not a 100 % failure rate (0 for "
    "other events)",
    "events_10s": "events by the user in the 10 seconds up to and including this one",
    "gap_regularity_1m": "coefficient of variation of the gaps between consecutive events "
    "of the user's last minute (1 with fewer than 3; the pause before the minute's first "
    "event is not one of them): scripts keep a steady beat, people do not",
    "is_automation_agent": "1 if the user agent names a headless browser, an HTTP library "
    "or a scripted client",
    "bytes_1h_log": "log1p of the bytes the user moved in the last hour (downloads and API "
    "calls alike)",
    "transfer_1h_vs_typical": "the user's mean transfer of the last hour (a plain mean, so "
    "one large transfer shows) / their typical transfer of an hour before (as "
    "bytes_vs_user_mean; 0 when none moved; 1 without history; capped at 1e6): many "
    "ordinary transfers in an hour do not raise it, larger ones do",
    "value_after_risky_access": "1 for a purchase or download within 15 minutes after the "
    "user's password reset or login from a new device, country or IP",
    "items_log": "log1p of the items of a purchase or cart addition (0 for other events)",
    "country_share": "share of the user's earlier places (events that were not failed "
    "logins) in this event's country (1 without history)",
    "device_rarity": "how rarely the user is on this event's device (type and user agent): "
    "-ln((earlier places on it + 1) / (earlier places + 2)), places as for country_share "
    "(0 without history); unlike device_novelty it stays high for a device seen only a "
    "few times, such as an attacker's second visit",
}
#: Feature -> the event columns it is computed from, besides user_id and event_time (every
#: feature is per user, in event-time order): the silver column lineage.
FEATURE_INPUTS: dict[str, tuple[str, ...]] = {
    "events_1m": (),
    "events_5m": (),
    "failed_logins_10m": ("event_type", "success"),
    "distinct_ips_1h": ("ip_address",),
    "distinct_countries_24h": ("event_type", "success", "country"),
    "seconds_since_prev": (),
    "country_novelty": ("event_type", "success", "country"),
    "device_novelty": ("event_type", "success", "device_type", "user_agent"),
    "ip_novelty": ("event_type", "success", "ip_address"),
    "hour_of_day": (),
    "hour_deviation": (),
    "amount_vs_user_mean": ("event_type", "amount"),
    "amount_log": ("event_type", "amount"),
    "bytes_log": ("bytes_transferred",),
    "bytes_vs_user_mean": ("bytes_transferred",),
    "duration_ms_log": ("duration_ms",),
    "travel_speed_kmh": ("event_type", "success", "country"),
    "travel_speed_max_1h": ("event_type", "success", "country"),
    "failed_login_ips_10m": ("event_type", "success", "ip_address"),
    "failed_login_ratio_10m": ("event_type", "success"),
    "events_10s": (),
    "gap_regularity_1m": (),
    "is_automation_agent": ("user_agent",),
    "bytes_1h_log": ("bytes_transferred",),
    "transfer_1h_vs_typical": ("bytes_transferred",),
    "value_after_risky_access": (
        "event_type",
        "success",
        "country",
        "ip_address",
        "device_type",
        "user_agent",
    ),
    "items_log": ("event_type", "items"),
    "country_share": ("event_type", "success", "country"),
    "device_rarity": ("event_type", "success", "device_type", "user_agent"),
}
#: Travel counts into a country with less than this share of the user's places.
RARE_COUNTRY_SHARE = 0.05
#: Least novelty of a new place: a new place always reads as one (risky access).
MIN_NOVELTY = 1e-3
#: A place (country, device, IP) stays new for this long after its first use.
NEW_PLACE_S = 3600
#: Window of value_after_risky_access: a takeover cashes in soon after getting in.
RISKY_ACCESS_WINDOW_S = 15 * 60
#: Case-insensitive pattern of automation user agents (is_automation_agent).
AUTOMATION_AGENTS = (
    r"(?i)(headless|phantomjs|selenium|webdriver|puppeteer|playwright|python-requests|"
    r"python-urllib|aiohttp|httpx|curl/|wget/|go-http-client|okhttp|java/|"
    r"apache-httpclient|libwww-perl|scrapy|node-fetch|axios/|postmanruntime|"
    r"\bbot\b|crawler|spider)"
)
#: Events whose value a takeover is after (value_after_risky_access).
VALUE_EVENTS = ("purchase", "file_download")
#: Shortest gap travel_speed_kmh divides by: two events in the same second are not an
#: infinite speed.
MIN_TRAVEL_GAP_S = 60.0
FEATURE_COLUMNS = tuple(FEATURES)


def stream_features(stream) -> tuple[str, ...]:
    """The features ``stream`` computes: the ones its spec lists, or every feature."""
    return FEATURE_COLUMNS if stream.features is None else tuple(stream.features)


#: Columns silver keeps from bronze, besides the features.
EVENT_COLUMNS = (
    "event_id",
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
    "extra_fields",
    "topic",
    "partition",
    "offset",
    "batch_id",
)
REQUIRED_COLUMNS = (
    "event_id",
    "event_type",
    "event_time",
    "user_id",
    "session_id",
    "ip_address",
    "country",
    "device_type",
    "batch_id",
)
#: Silver columns gold carries next to its scores.
GOLD_EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "event_type",
    "event_time",
    "country",
    "device_type",
    "batch_id",
)
MAX_GAP_S = 7 * 24 * 3600
#: Cap of the ratio features: a huge amount over a tiny mean stays finite.
MAX_RATIO = 1e6


#: The longest window a feature looks back over (distinct_countries_24h).
LONGEST_WINDOW_S = 24 * 3600
#: The longest of the other windows (distinct_ips_1h). Rows older than this before a batch
#: are needed only by distinct_countries_24h and the previous place (travel), which need no
#: more of them than a summary.
RAW_WINDOW_S = 3600


def _fingerprint() -> str:
    """Hash of what the features mean: their definitions, the constants and patterns the
    code computes them with, and the country centres' data version. Change one when you
    change what a feature computes, and the fingerprint follows."""
    from importlib.metadata import version

    meaning = {
        "definitions": FEATURES,
        "constants": [
            RARE_COUNTRY_SHARE,
            NEW_PLACE_S,
            RISKY_ACCESS_WINDOW_S,
            AUTOMATION_AGENTS,
            VALUE_EVENTS,
            MIN_TRAVEL_GAP_S,
            MAX_GAP_S,
            MAX_RATIO,
        ],
        "country_centres": version("countrystatecity-countries"),
    }
    return hashlib.sha256(json.dumps(meaning).encode()).hexdigest()[:12]


#: A model records the fingerprint it was trained on; gold refuses to score silver rows of
#: other meanings with it.
FEATURE_FINGERPRINT = _fingerprint()


def dedupe_within(new):
    """One row per event_id: the earliest offset (a message delivered twice in a batch)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy("event_id").orderBy("topic", "partition", "offset")
    return (
        new.withColumn("_rn", F.row_number().over(first)).filter("_rn = 1").drop("_rn")
    )


_PROFILE_FIELDS = (
    "events",
    "last_event_time",
    "last_country",
    "last_country_time",
    "purchases",
    "amount_sum",
    "amount_log_e9",
    "transfers",
    "bytes_sum",
    "bytes_log_e9",
    "hour_sin_e9",
    "hour_cos_e9",
)


def country_summary(rows):
    """``rows`` (silver rows of the hours before those read in full) as distinct_countries_24h
    and the previous place need them: per user, country, clock hour and whether the event was
    a failed login, only the last event time (failed logins as bare failed logins, so both
    features can skip them).

    Exact: a country is in the 24 hours before an event at t if and only if one of its times
    is in [t - 24 h, t]. Every summarised time is before t, so the hour's last one is in that
    span whenever any of them is; and the last summarised time that is not a failed login is
    the last such event of those hours. An hour of a busy user, hundreds of rows, becomes at
    most two rows per country.
    """
    from pyspark.sql import functions as F

    hour = F.floor(F.col("event_time").cast("long") / 3600).alias("_hour")
    failed = failed_login()
    return (
        rows.groupBy(
            "user_id",
            "country",
            hour,
            # Failed logins apart, as a bare failed login: the countries and travel skip them.
            F.when(failed, F.lit("login")).alias("event_type"),
            F.when(failed, F.lit(False)).alias("success"),
        )
        .agg(F.max("event_time").alias("event_time"))
        .drop("_hour")
    )


def _with_profile(events, profile):
    """``events`` with the user's profile as ``p_*`` columns (zeros / empty without one)."""
    from pyspark.sql import functions as F

    from anomaly_assets.silver.profile import SET_TYPE, upgraded

    # p_<set>_seen: the user's places, each with its first_seen and count.
    sets = ("countries", "devices", "ips")
    if profile is None:
        return events.select(
            "*",
            *[F.lit(None).alias(f"p_{c}") for c in _PROFILE_FIELDS],
            *[F.array().cast(SET_TYPE).alias(f"p_{s}_seen") for s in sets],
        )
    p = upgraded(profile).select(
        "user_id",
        *[F.col(c).alias(f"p_{c}") for c in _PROFILE_FIELDS],
        *[F.col(s).alias(f"p_{s}_seen") for s in sets],
    )
    return events.join(p, "user_id", "left").select(
        *events.columns,
        *[F.col(f"p_{c}") for c in _PROFILE_FIELDS],
        *[
            F.coalesce(f"p_{s}_seen", F.array().cast(SET_TYPE)).alias(f"p_{s}_seen")
            for s in sets
        ],
    )


def featurize(new, context=None, profile=None, watermark=None, summary=None):
    """Silver rows to upsert: every ``new`` row, plus the ``context`` rows it corrects.

    ``new``: deduplicated bronze-shaped rows (EVENT_COLUMNS) not in silver yet.
    ``context``: silver rows of the same users that the windows and the out-of-order
    correction need (at least the 24 hours before each new event and every row at or
    after ``watermark``). ``summary``: optionally, the older part of those 24 hours as
    ``country_summary`` rows instead of rows: all before ``watermark``, more than
    RAW_WINDOW_S before every on-time new row, and not within 24 hours before a late one.
    ``profile``: the users' profiles, folded through ``watermark``. A new row older than
    ``watermark`` is ``late``: its features use the current profile and it corrects nothing.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from anomaly_assets.silver.geo import distance_expr
    from anomaly_assets.silver.profile import (
        HOUR_SCALE,
        LOG_SUMS,
        hour_terms,
        log_sum,
        log_term,
        place_time,
    )

    late = (
        F.lit(False)
        if watermark is None
        else F.col("event_time") < F.lit(watermark).cast("timestamp")
    )
    no_flag = F.lit(None).cast("boolean").alias("_risky_stored")
    no_speed = F.lit(None).cast("double").alias("_speed_stored")
    events = new.select(*EVENT_COLUMNS, late.alias("late"), no_flag, no_speed)
    events = events.withColumn("_new", F.lit(True))
    if context is not None:
        events = events.unionByName(
            context.select(
                *EVENT_COLUMNS,
                "late",
                risky_access().alias("_risky_stored"),
                _stored("travel_speed_kmh", context).alias("_speed_stored"),
            ).withColumn("_new", F.lit(False))
        )
    if summary is not None:  # its times stand for events in windows and "previous" only
        # (and for the previous place, failed logins told apart)
        kept = ("user_id", "country", "event_time", "event_type", "success")
        types = dict(events.dtypes)
        events = events.unionByName(
            summary.select(
                *[
                    F.col(c) if c in kept else F.lit(None).cast(types[c]).alias(c)
                    for c in EVENT_COLUMNS
                ],
                F.lit(False).alias("late"),
                no_flag,
                no_speed,
                F.lit(False).alias("_new"),
            )
        )
    # Rows before the watermark are in the profile already: the "prior" sums skip them.
    tail = (
        F.lit(True)
        if watermark is None
        else F.col("event_time") >= F.lit(watermark).cast("timestamp")
    )
    events = _with_profile(events, profile).withColumn("_tail", tail)

    ts = F.col("_ts")
    by_user = Window.partitionBy("user_id")
    ordered = by_user.orderBy("_ts", "topic", "partition", "offset")
    prior = ordered.rowsBetween(Window.unboundedPreceding, -1)

    def last(seconds):
        return by_user.orderBy("_ts").rangeBetween(-seconds, 0)

    def minute_gaps():
        """(count, mean, population std) of the gaps between consecutive events of the
        user's last minute. Each event's ``_gap`` reaches back to its previous event, so
        the earliest event's gap reaches out of the minute (a pause before a burst): it is
        taken out as the window's gaps summed minus its span, exactly and whatever the ties
        at its start. Squares are summed over gaps of at most a minute only, so an hour's pause
        cannot swamp a second's beat in floating point."""
        w = last(60)
        span = F.max("_ts").over(w) - F.min("_ts").over(w)
        first = F.coalesce(F.sum("_gap").over(w), F.lit(0.0)) - span
        short = F.when(F.col("_gap") <= 60, F.col("_gap") * F.col("_gap"))
        squares = F.coalesce(F.sum(short).over(w), F.lit(0.0)) - F.when(
            first <= 60, first * first
        ).otherwise(F.lit(0.0))
        n = F.count(F.lit(1)).over(w) - 1
        # No division by zero (an error under ANSI SQL) in a minute of one event.
        mean = F.when(n > 0, span / n)
        variance = F.when(n > 0, squares / n) - mean * mean
        return n, mean, F.sqrt(F.greatest(variance, F.lit(0.0)))

    def tail_only(expr):
        return F.when(F.col("_tail"), expr)

    failed = failed_login()

    # Share of the user's earlier places (events that were not failed logins) in this
    # event's country: the profile's counts plus the rows at hand before this one.
    place_one = tail_only(F.when(~failed, F.lit(1)))

    def counted(entries):
        return F.aggregate(entries, F.lit(0).cast("long"), lambda n, e: n + e["count"])

    def places_at(profile_seen, value):
        """The user's earlier places at ``value``: the profile's count plus the rows at
        hand before this one."""
        same = (
            Window.partitionBy("user_id", value)
            .orderBy("_ts", "topic", "partition", "offset")
            .rowsBetween(Window.unboundedPreceding, -1)
        )
        return counted(
            F.filter(profile_seen, lambda e: e["value"] == F.col(value))
        ) + F.count(place_one).over(same)

    here = places_at("p_countries_seen", "country")
    everywhere = counted(F.col("p_countries_seen")) + F.count(place_one).over(prior)
    country_share = F.when(everywhere > 0, here / everywhere)
    # The same count for the event's device, as a surprisal: a device seen on a handful of
    # a user's hundreds of places is as telling as a new one.
    on_device = places_at("p_devices_seen", "_device")
    device_rarity = F.when(
        everywhere > 0, -F.log((on_device + 1) / (everywhere + 2))
    ).otherwise(F.lit(0.0))

    # "New" places: not known as of NEW_PLACE_S before the event, so a session from a new
    # IP stays new for its hour, not only at its first event.
    settled = ts - NEW_PLACE_S
    before = by_user.orderBy("_ts").rangeBetween(
        Window.unboundedPreceding, -NEW_PLACE_S
    )

    up_to_now = by_user.orderBy("_ts").rangeBetween(Window.unboundedPreceding, 0)
    in_profile = ~F.col("_tail") & ~F.col("_new")

    def hour_old(agg, expr):
        """``agg`` of ``expr`` over the user's rows an hour old or more, beside the profile:
        the batch's such rows, less the profile's rows of the last hour (they are at hand
        as context rows, RAW_WINDOW_S covers them)."""

        def over(rows, window):
            return F.coalesce(agg(F.when(rows, expr)).over(window), F.lit(0))

        return (
            over(F.col("_tail"), before)
            - over(in_profile, up_to_now)
            + over(in_profile, before)
        )

    # The user's place events as of NEW_PLACE_S before the event: novelty's denominator.
    place_events = F.coalesce(counted(F.col("p_countries_seen")), F.lit(0)) + hour_old(
        F.count, F.when(~failed, F.lit(1))
    )

    def novelty(value, profile_seen):
        """0 for a place known an hour ago; for a new one, -ln((places + 1) / (place
        events + 2)) as of then: a new IP says little of a user who changes IPs often."""
        place = tail_only(F.when(~failed, value))
        known = F.filter(
            profile_seen, lambda e: e["first_seen"].cast("double") <= settled
        )
        rows = F.collect_set(place).over(before)
        is_new = has_places & ~(
            F.exists(known, lambda e: e["value"] == value)
            | F.coalesce(F.array_contains(rows, value), F.lit(False))
        )
        none = F.array().cast("array<string>")
        places = F.size(
            F.array_union(
                F.coalesce(F.transform(known, lambda e: e["value"]), none),
                F.coalesce(rows, none),
            )
        )
        surprise = -F.log((places + 1) / (place_events + 2))
        return F.when(is_new, F.greatest(surprise, F.lit(MIN_NOVELTY))).otherwise(0.0)

    sin, cos = hour_terms()
    sin_sum = F.coalesce("p_hour_sin_e9", F.lit(0)) + F.coalesce(
        F.sum(tail_only(sin)).over(prior), F.lit(0)
    )
    cos_sum = F.coalesce("p_hour_cos_e9", F.lit(0)) + F.coalesce(
        F.sum(tail_only(cos)).over(prior), F.lit(0)
    )
    prior_events = F.coalesce("p_events", F.lit(0)) + F.count(tail_only(F.lit(1))).over(
        prior
    )
    has_history = prior_events > 0
    # A user has places to compare with once their first place is NEW_PLACE_S old.
    first_place = F.least(
        F.array_min(F.transform("p_countries_seen", lambda e: e["first_seen"])).cast(
            "double"
        ),
        F.min(tail_only(F.when(~failed, ts))).over(prior),
    )
    has_places = F.coalesce(first_place <= settled, F.lit(False))
    mean_hour = (
        F.atan2(sin_sum / HOUR_SCALE, cos_sum / HOUR_SCALE) * (24 / (2 * math.pi)) + 24
    ) % 24
    hour_gap = F.abs(F.col("hour_of_day") - mean_hour)

    def earlier(agg, expr):
        """``agg`` of ``expr`` over the rows at hand before this one, beside the profile."""
        return F.coalesce(agg(tail_only(expr)).over(prior), F.lit(0))

    def typical(log_column: str, hour_ago: bool = False):
        """The user's typical earlier value: expm1 of the mean log1p (geometric mean), of
        every earlier event or, with ``hour_ago``, of those an hour old or more."""
        count, _, value = LOG_SUMS[log_column]
        rows = hour_old if hour_ago else earlier
        n = F.coalesce(f"p_{count}", F.lit(0)) + rows(F.count, value())
        logs = log_sum(log_column, "p_") + rows(F.sum, log_term(log_column))
        return F.when(n > 0, F.expm1(logs / HOUR_SCALE / n))

    prior_amount = typical("amount_log_e9")
    # As of an hour before: a burst of transfers would otherwise raise its own baseline
    # call by call (exfiltration's later calls looked ordinary).
    prior_bytes = typical("bytes_log_e9", hour_ago=True)
    # The previous event: in the rows at hand, else the profile's last (if before this one).
    profile_last = F.when(
        F.col("p_last_event_time") <= F.col("event_time"),
        F.col("p_last_event_time").cast("double"),
    )
    previous = F.coalesce(F.lag("_ts").over(ordered), profile_last)
    gap = ts - previous
    # Travel starts from the previous place that was not a failed login.
    profile_place_time = place_time("p_")
    profile_place = F.when(
        profile_place_time <= F.col("event_time"), profile_place_time.cast("double")
    )
    place = F.last(
        F.when(~failed, F.struct(ts.alias("ts"), F.col("country").alias("country"))),
        ignorenulls=True,
    ).over(prior)
    previous_country = F.when(place.isNotNull(), place["country"]).when(
        profile_place.isNotNull(), F.col("p_last_country")
    )
    place_gap = ts - F.coalesce(place["ts"], profile_place)
    speed = F.when(
        F.coalesce(country_share, F.lit(0.0)) < RARE_COUNTRY_SHARE,
        distance_expr(previous_country, F.col("country"))
        / (F.greatest(place_gap, F.lit(MIN_TRAVEL_GAP_S)) / 3600),
    )
    is_login = F.coalesce(F.col("event_type") == "login", F.lit(False))
    logins = F.sum(is_login.cast("int")).over(last(600))
    # Counted on logins only: the user's own clicks while someone else stuffs their
    # password are not the attack.
    failed_10m = F.when(is_login, F.sum(failed.cast("int")).over(last(600))).otherwise(
        0
    )
    # A double: an hour of contract-valid transfers (each up to 2^63 - 1 bytes) would
    # overflow a long sum, an error under ANSI SQL that would stop silver on every retry.
    moved = F.coalesce(F.col("bytes_transferred"), F.lit(0)).cast("double")
    bytes_1h = F.sum(moved).over(last(3600))
    transfers_1h = F.count("bytes_transferred").over(last(3600))
    # The earliest new, on-time event of the user: rows after it may change.
    first_new = F.min(F.when(F.col("_new") & ~F.col("late"), ts)).over(by_user)

    # Two projections, not a withColumn each: Spark analyses a plan once per call.
    base = events.withColumns(
        {
            "_ts": F.col("event_time").cast("double"),
            "_device": device_expr(),
            "hour_of_day": F.hour("event_time"),
        }
    )
    featured = base.withColumns(
        {
            "events_1m": F.count(F.lit(1)).over(last(60)),
            "events_5m": F.count(F.lit(1)).over(last(300)),
            "failed_logins_10m": failed_10m,
            "distinct_ips_1h": F.size(F.collect_set("ip_address").over(last(3600))),
            "distinct_countries_24h": F.size(
                F.array_union(
                    F.collect_set(F.when(~failed, F.col("country"))).over(
                        last(LONGEST_WINDOW_S)
                    ),
                    F.array_compact(F.array("country")),
                )
            ),
            "seconds_since_prev": F.least(
                F.coalesce(ts - previous, F.lit(MAX_GAP_S)), F.lit(MAX_GAP_S)
            ).cast("double"),
            "country_novelty": novelty(F.col("country"), F.col("p_countries_seen")),
            "device_novelty": novelty(F.col("_device"), F.col("p_devices_seen")),
            "ip_novelty": novelty(F.col("ip_address"), F.col("p_ips_seen")),
            "hour_deviation": F.when(has_history, F.least(hour_gap, 24 - hour_gap))
            .otherwise(F.lit(0.0))
            .cast("double"),
            "amount_vs_user_mean": F.when(F.col("event_type") != "purchase", F.lit(0.0))
            .when(prior_amount.isNull() | (prior_amount == 0), F.lit(1.0))
            .otherwise(F.least(F.col("amount") / prior_amount, F.lit(MAX_RATIO))),
            "amount_log": F.when(
                F.col("event_type") == "purchase",
                F.log1p(F.coalesce("amount", F.lit(0.0))),
            ).otherwise(F.lit(0.0)),
            "bytes_log": F.log1p(F.coalesce("bytes_transferred", F.lit(0))),
            "bytes_vs_user_mean": F.when(
                F.col("bytes_transferred").isNull(), F.lit(0.0)
            )
            .when(prior_bytes.isNull() | (prior_bytes == 0), F.lit(1.0))
            .otherwise(
                F.least(F.col("bytes_transferred") / prior_bytes, F.lit(MAX_RATIO))
            ),
            "duration_ms_log": F.log1p(F.coalesce("duration_ms", F.lit(0))),
            "travel_speed_kmh": F.coalesce(speed, F.lit(0.0)),
            "failed_login_ips_10m": F.when(
                is_login,
                F.size(
                    F.collect_set(F.when(failed, F.col("ip_address"))).over(last(600))
                ),
            ).otherwise(0),
            "failed_login_ratio_10m": F.when(
                is_login, failed_10m / (logins + 1)
            ).otherwise(F.lit(0.0)),
            "events_10s": F.count(F.lit(1)).over(last(10)),
            "is_automation_agent": F.coalesce(
                F.col("user_agent").rlike(AUTOMATION_AGENTS), F.lit(False)
            ).cast("int"),
            "bytes_1h_log": F.log1p(bytes_1h),
            "transfer_1h_vs_typical": F.when(bytes_1h == 0, F.lit(0.0))
            .when(prior_bytes.isNull() | (prior_bytes == 0), F.lit(1.0))
            .otherwise(
                F.least(
                    bytes_1h / transfers_1h / prior_bytes,
                    F.lit(MAX_RATIO),
                )
            ),
            "country_share": F.coalesce(country_share, F.lit(1.0)),
            "device_rarity": device_rarity,
            "items_log": F.when(
                F.col("event_type").isin("purchase", "add_to_cart"),
                F.log1p(F.coalesce("items", F.lit(0))),
            ).otherwise(F.lit(0.0)),
            "_gap": gap,
            "_first_new": first_new,
        }
    )
    # Windows over per-row results: the gaps' beat, the access that went before, the
    # fastest recent jump. A context row before the watermark keeps its stored access flag
    # and speed (computed against the history it had, which the profile has since absorbed).
    own = F.col("_tail") | F.col("_new")
    risky = F.when(own, risky_access()).otherwise(
        F.coalesce("_risky_stored", F.lit(False))
    )
    speed = F.when(own, F.col("travel_speed_kmh")).otherwise(F.col("_speed_stored"))
    # The last hour's jumps, to find those into this event's country.
    arrivals = F.collect_list(
        F.when(
            speed > 0, F.struct(F.col("country").alias("country"), speed.alias("speed"))
        )
    ).over(last(3600))
    n_gaps, mean_gap, gap_sd = minute_gaps()
    featured = featured.withColumns(
        {
            "travel_speed_max_1h": F.coalesce(
                F.array_max(
                    F.transform(
                        F.filter(arrivals, lambda e: e["country"] == F.col("country")),
                        lambda e: e["speed"],
                    )
                ),
                F.lit(0.0),
            ),
            "gap_regularity_1m": F.when(
                (n_gaps >= 3) & (mean_gap > 0), gap_sd / mean_gap
            ).otherwise(F.lit(1.0)),
            "value_after_risky_access": (
                F.col("event_type").isin(*VALUE_EVENTS)
                & F.coalesce(
                    F.max(risky.cast("int")).over(last(RISKY_ACCESS_WINDOW_S)) > 0,
                    F.lit(False),
                )
            ).cast("int"),
        }
    )
    corrected = ~F.col("_new") & F.col("_tail") & (ts >= F.col("_first_new"))
    return featured.filter(F.col("_new") | corrected).select(
        *EVENT_COLUMNS,
        "late",
        *[
            F.col(c).cast("double").alias(c, metadata={"comment": FEATURES[c]})
            for c in FEATURE_COLUMNS
        ],
        F.current_timestamp().alias("silver_processed_at"),
    )


def _stored(column: str, rows):
    """``column`` of stored silver ``rows`` (NULL when written before it existed)."""
    from pyspark.sql import functions as F

    return F.col(column) if column in rows.columns else F.lit(None).cast("double")


def risky_access():
    """Column: a password reset, or a successful login from a new device, country or IP
    (of rows that carry the *_novelty features)."""
    from pyspark.sql import functions as F

    new_place = (
        (F.col("device_novelty") > 0)
        | (F.col("country_novelty") > 0)
        | (F.col("ip_novelty") > 0)
    )
    login = (F.col("event_type") == "login") & F.coalesce(F.col("success"), F.lit(True))
    return F.coalesce(
        (F.col("event_type") == "password_reset") | (login & new_place), F.lit(False)
    )


def silver_rows(new):
    """Silver rows for ``new`` bronze rows on an empty lakehouse (no state yet)."""
    return featurize(dedupe_within(new.select(*EVENT_COLUMNS)))
