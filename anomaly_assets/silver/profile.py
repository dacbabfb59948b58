"""silver_user_profile: each user's history folded into one row of bounded size.

Everything the "ever seen before" features need, for all of a user's events before the
profile's ``through`` time (the silver watermark when it was folded): event count, first and
last event time, the last place (country and time of the last event that was not a failed
login), purchase count and exact amount sum, transfer count and exact byte sum, fixed-point
sums of sin / cos of the active hours (a circular mean without float drift), fixed-point
sums of log1p of amounts and bytes (geometric means: the typical purchase and transfer), and
the user's places: countries, devices and IP addresses of events that were not failed
logins, each with first / last seen and a count.

Sets are capped (``SET_CAPS``): past the cap the values seen longest ago are forgotten, so a
user with more than 256 IP addresses may see an old one counted as new again, and a user
with more than 64 countries has each kept country's share (country_share) computed over the
kept ones only; a device forgotten past 64 counts as never used (device_rarity). Folding is a pure function of (old profile, events): a retry that folds the
same events into the same old profile writes the same row.
"""

import math

from anomaly_assets.silver.event_exprs import device_expr, failed_login

#: Most values kept per set; the least recently seen go first.
SET_CAPS = {"countries": 64, "devices": 64, "ips": 256}
#: Hours are summed as round(sin * 1e9), so sums are exact integers.
HOUR_SCALE = 1_000_000_000
#: Amounts are summed as DECIMAL(38, 6), capped here so the sum cannot overflow.
AMOUNT_CAP = 1e15
AMOUNT_TYPE = "decimal(38,6)"
SET_TYPE = (
    "array<struct<value:string,first_seen:timestamp,last_seen:timestamp,count:bigint>>"
)
PROFILE_SCHEMA = (
    "user_id string, events bigint, first_event_time timestamp, "
    "last_event_time timestamp, last_country string, last_country_time timestamp, "
    "purchases bigint, amount_sum decimal(38,6), amount_log_e9 bigint, "
    "transfers bigint, bytes_sum decimal(38,0), bytes_log_e9 bigint, hour_sin_e9 bigint, "
    "hour_cos_e9 bigint, "
    f"countries {SET_TYPE}, devices {SET_TYPE}, ips {SET_TYPE}, "
    "through timestamp, updated_at timestamp"
)
PROFILE_COLUMNS = tuple(c.split()[0] for c in PROFILE_SCHEMA.split(", "))
#: Set name -> the event column (expression) it collects.
SET_SOURCES = {"countries": "country", "devices": "_device", "ips": "ip_address"}


def hour_terms():
    """(sin, cos) of the event's hour as fixed-point integers."""
    from pyspark.sql import functions as F

    angle = F.hour("event_time") * (2 * math.pi / 24)
    return (
        F.round(F.sin(angle) * HOUR_SCALE).cast("long"),
        F.round(F.cos(angle) * HOUR_SCALE).cast("long"),
    )


def amount_term():
    """The purchase amount as an exact decimal (None for other events)."""
    from pyspark.sql import functions as F

    return F.when(
        F.col("event_type") == "purchase",
        F.least(F.col("amount"), F.lit(AMOUNT_CAP)).cast(AMOUNT_TYPE),
    )


def bytes_term():
    """The bytes transferred (None when the event moves no data)."""
    from pyspark.sql import functions as F

    return F.col("bytes_transferred")


#: Typical values kept as sums of log1p (fixed point): log column -> (count column, exact
#: sum column, the event's value). Their mean gives a geometric mean, which a burst being
#: measured, or an old one, moves far less than it moves the plain mean.
LOG_SUMS = {
    "amount_log_e9": ("purchases", "amount_sum", amount_term),
    "bytes_log_e9": ("transfers", "bytes_sum", bytes_term),
}


def log_term(log_column: str):
    """This event's log1p value as a fixed-point integer (None when it has none)."""
    from pyspark.sql import functions as F

    value = LOG_SUMS[log_column][2]().cast("double")
    return F.when(
        value.isNotNull(),
        F.round(F.log1p(F.greatest(value, F.lit(0.0))) * HOUR_SCALE).cast("long"),
    )


def place_time(prefix: str):
    """The profile's ``last_country_time`` under ``prefix``. Rows written before it existed
    took ``last_country`` from the last event, whatever it was: its time stands in."""
    from pyspark.sql import functions as F

    return F.coalesce(
        f"{prefix}last_country_time",
        F.when(
            F.col(f"{prefix}last_country").isNotNull(),
            F.col(f"{prefix}last_event_time"),
        ),
    )


def log_sum(log_column: str, prefix: str):
    """The profile's ``log_column`` under ``prefix`` (``"o."``, ``"p_"``). Rows written
    before it existed have NULL there: their history counts as that many of its mean."""
    from pyspark.sql import functions as F

    count, total, _ = LOG_SUMS[log_column]
    n, total = F.col(f"{prefix}{count}"), F.col(f"{prefix}{total}").cast("double")
    return F.coalesce(
        F.col(f"{prefix}{log_column}"),
        F.when(n > 0, F.round(F.log1p(total / n) * HOUR_SCALE * n).cast("long")),
        F.lit(0),
    )


def _event_totals(events):
    from pyspark.sql import functions as F

    sin, cos = hour_terms()
    amount = amount_term()
    return events.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("events"),
        F.min("event_time").alias("first_event_time"),
        F.max("event_time").alias("last_event_time"),
        # The country of the last event that was not a failed login, ties in time broken
        # as silver orders events (max_by skips the NULL orderings of failed logins).
        F.max_by(
            "country",
            F.when(
                ~failed_login(), F.struct("event_time", "topic", "partition", "offset")
            ),
        ).alias("last_country"),
        F.max(F.when(~failed_login(), F.col("event_time"))).alias("last_country_time"),
        F.count(amount).alias("purchases"),
        F.sum(amount).alias("amount_sum"),
        F.count("bytes_transferred").alias("transfers"),
        F.sum(F.col("bytes_transferred").cast("decimal(38,0)")).alias("bytes_sum"),
        *[F.sum(log_term(c)).alias(c) for c in LOG_SUMS],
        F.sum(sin).alias("hour_sin_e9"),
        F.sum(cos).alias("hour_cos_e9"),
    )


def _merged_set(name: str, events, old):
    """user_id, <name>: the old set plus the events' values, capped, newest first."""
    from pyspark.sql import functions as F

    # Known places come from events that were not failed logins (the attacker's place).
    places = events.where(~failed_login())
    seen = places.groupBy("user_id", F.col(SET_SOURCES[name]).alias("value")).agg(
        F.min("event_time").alias("first_seen"),
        F.max("event_time").alias("last_seen"),
        F.count(F.lit(1)).alias("count"),
    )
    if old is not None:
        kept = old.select("user_id", F.explode(name).alias("e")).select(
            "user_id", "e.value", "e.first_seen", "e.last_seen", "e.count"
        )
        seen = (
            seen.unionByName(kept)
            .groupBy("user_id", "value")
            .agg(
                F.min("first_seen").alias("first_seen"),
                F.max("last_seen").alias("last_seen"),
                F.sum("count").alias("count"),
            )
        )
    # Newest first; ties broken by value so the cap keeps the same values on every run.
    ordered = F.sort_array(
        F.collect_list(
            F.struct(
                F.col("last_seen"),
                F.col("value"),
                F.col("first_seen"),
                F.col("count"),
            )
        ),
        asc=False,
    )
    return seen.groupBy("user_id").agg(
        F.transform(
            F.slice(ordered, 1, SET_CAPS[name]),
            lambda e: F.struct(
                e["value"].alias("value"),
                e["first_seen"].alias("first_seen"),
                e["last_seen"].alias("last_seen"),
                e["count"].alias("count"),
            ),
        )
        .cast(SET_TYPE)
        .alias(name)
    )


def upgraded(profile):
    """``profile`` with the columns added since it was written, as NULLs (a table written
    by an earlier version gains them at its next MERGE)."""
    from pyspark.sql import functions as F

    missing = {c: t for c, t in _types() if c not in profile.columns}
    return (
        profile.withColumns({c: F.lit(None).cast(t) for c, t in missing.items()})
        if missing
        else profile
    )


def fold(old, events, through):
    """Profiles of the users in ``events`` after folding those events into ``old``
    (None = no profile yet). ``through`` (a datetime) is stamped on every row."""
    from pyspark.sql import functions as F

    events = events.withColumn("_device", device_expr())
    totals = _event_totals(events)
    if old is not None:
        old = upgraded(old)
        users = totals.select("user_id")
        old = old.join(users, "user_id")  # only the users being folded
        added = totals.alias("n").join(old.alias("o"), "user_id", "left")

        def plus(c):
            return F.coalesce(F.col(f"o.{c}"), F.lit(0)) + F.col(f"n.{c}")

        def plus_sum(c):  # sums are NULL for users without such events
            return F.coalesce(F.col(f"o.{c}"), F.lit(0)) + F.coalesce(
                F.col(f"n.{c}"), F.lit(0)
            )

        old_place_time = place_time("o.")
        take_new_place = F.col("n.last_country_time").isNotNull() & (
            old_place_time.isNull() | (F.col("n.last_country_time") >= old_place_time)
        )
        totals = added.select(
            "user_id",
            *[plus(c).alias(c) for c in ("events", "purchases", "transfers")],
            *[
                plus_sum(c).alias(c)
                for c in ("amount_sum", "bytes_sum", "hour_sin_e9", "hour_cos_e9")
            ],
            *[
                (log_sum(c, "o.") + F.coalesce(f"n.{c}", F.lit(0))).alias(c)
                for c in LOG_SUMS
            ],
            F.least("o.first_event_time", "n.first_event_time").alias(
                "first_event_time"
            ),
            F.greatest("o.last_event_time", "n.last_event_time").alias(
                "last_event_time"
            ),
            F.when(take_new_place, F.col("n.last_country"))
            .otherwise(F.col("o.last_country"))
            .alias("last_country"),
            F.when(take_new_place, F.col("n.last_country_time"))
            .otherwise(old_place_time)
            .alias("last_country_time"),
        )
    out = totals
    for name in SET_CAPS:
        out = out.join(_merged_set(name, events, old), "user_id", "left")
    return out.select(
        *[F.col(c) for c in PROFILE_COLUMNS if c not in ("through", "updated_at")],
        F.lit(through).cast("timestamp").alias("through"),
        F.current_timestamp().alias("updated_at"),
    ).select(*[F.col(c).cast(t) for c, t in _types()])


def _types():
    # SET_TYPE has no ", " inside, so the schema splits on it.
    return [tuple(c.split(maxsplit=1)) for c in PROFILE_SCHEMA.split(", ")]
