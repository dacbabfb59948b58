"""Silver: typed events plus per-user behaviour features that reach back into earlier batches.

``featurize(new, context, profile, watermark)`` computes features for the ``new`` bronze rows
from bounded state: each user's profile (every event before the ``watermark``, folded into
counts, sums and capped sets; see ``silver/profile.py``) plus the ``context`` silver rows the
windows need (the last 24 hours before the batch and everything after the watermark). It
also returns the context rows a new, earlier event changes, so an out-of-order event
corrects the rows after it. Windows are on event time, per user: how the stream was cut
into batches changes no value, as long as no event is later than the allowed lateness.

The features themselves are declared in ``silver/catalogue/``; this module adds the working
columns they read (profile, watermark, stored context) and composes them.

Sums that feed a mean are exact (decimals and integers, circular hours as fixed-point
sin/cos sums), so the profile's part and the recent part add up to the same value whatever
the split.
"""

import hashlib
import json

from anomaly_assets.silver.catalogue import (
    CATALOGUE,
    CONSTANTS,
    FEATURE_COLUMNS,
    FEATURE_INPUTS,
    FEATURES,
)
from anomaly_assets.silver.catalogue.takeover import risky_access
from anomaly_assets.silver.catalogue.windows import (
    LONGEST_WINDOW_S,
    NEW_PLACE_S,
    by_user,
    previous,
)
from anomaly_assets.silver.event_exprs import device_expr, failed_login
from anomaly_assets.silver.profile import SET_TYPE, upgraded

__all__ = [
    "EVENT_COLUMNS",
    "FEATURES",
    "FEATURE_COLUMNS",
    "FEATURE_FINGERPRINT",
    "FEATURE_INPUTS",
    "GOLD_EVENT_COLUMNS",
    "LONGEST_WINDOW_S",
    "RAW_WINDOW_S",
    "REQUIRED_COLUMNS",
    "country_summary",
    "dedupe_within",
    "featurize",
    "silver_rows",
    "stream_features",
]


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

#: The longest of the other windows (distinct_ips_1h). Rows older than this before a batch
#: are needed only by distinct_countries_24h and the previous place (travel), which need no
#: more of them than a summary.
RAW_WINDOW_S = 3600
if (
    RAW_WINDOW_S < NEW_PLACE_S
):  # hour_old takes the profile's rows of the last NEW_PLACE_S
    # from the context rows, which reach back RAW_WINDOW_S
    raise ValueError("RAW_WINDOW_S must cover NEW_PLACE_S (see windows.hour_old)")


def _fingerprint() -> str:
    """Hash of what the features mean: their definitions, the constants and patterns the
    code computes them with, and the country centres' data version. Change one when you
    change what a feature computes, and the fingerprint follows."""
    from importlib.metadata import version

    meaning = {
        "definitions": FEATURES,
        "constants": list(CONSTANTS),
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
    from pyspark.sql import functions as F

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

    # One projection per stage, not a withColumn each: Spark analyses a plan once per call.
    ts = F.col("_ts")
    stages = [
        {"_ts": F.col("event_time").cast("double"), "_device": device_expr()},
        {
            # seconds since the user's previous event: gap_regularity_1m's beat
            "_gap": ts - previous(),
            # The earliest new, on-time event of the user: rows after it may change.
            "_first_new": F.min(F.when(F.col("_new") & ~F.col("late"), ts)).over(
                by_user()
            ),
        },
        {},
    ]
    for feature in CATALOGUE:
        stages[feature.stage][feature.name] = feature.compute()
    featured = events
    for columns in stages:
        featured = featured.withColumns(columns)
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


def silver_rows(new):
    """Silver rows for ``new`` bronze rows on an empty lakehouse (no state yet)."""
    return featurize(dedupe_within(new.select(*EVENT_COLUMNS)))
