"""Silver: typed events plus per-user behaviour features that reach back into earlier batches.

``silver_rows(new, history)`` computes features for the ``new`` bronze rows over the union with
the same users' ``history`` (earlier silver rows), then keeps only the new rows. Windows are
on event time, per user, so a batch boundary changes no value.
"""

import math

#: Feature name -> one-line definition. The model uses exactly these columns, in this order.
FEATURES: dict[str, str] = {
    "events_1m": "events by the user in the minute up to and including this one",
    "events_5m": "events by the user in the 5 minutes up to and including this one",
    "failed_logins_10m": "failed logins by the user in the last 10 minutes, this one included",
    "distinct_ips_1h": "distinct IP addresses the user used in the last hour",
    "distinct_countries_24h": "distinct countries the user was seen in over the last 24 hours",
    "seconds_since_prev": "seconds since the user's previous event (capped at 7 days)",
    "is_new_country": "1 if the user has history and never came from this country before",
    "is_new_device": "1 if the user has history and never used this device and agent before",
    "is_new_ip": "1 if the user has history and never used this IP address before",
    "hour_of_day": "hour of the event in UTC",
    "hour_deviation": "circular distance in hours from the user's usual hour (0 without history)",
    "amount_vs_user_mean": "purchase amount / the user's mean earlier purchase (1 if none; "
    "0 for other events; capped at 1e6)",
    "amount_log": "log1p of the purchase amount (0 for other events)",
    "bytes_log": "log1p of bytes transferred (0 when the event moves no data)",
    "bytes_vs_user_mean": "bytes transferred / the user's mean earlier transfer (1 if none; "
    "0 when no data; capped at 1e6)",
    "duration_ms_log": "log1p of the event's duration in milliseconds",
    "is_failed_login": "1 for a login with success = false",
}
FEATURE_COLUMNS = tuple(FEATURES)

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


def dedupe_new(new, history):
    """New rows with one row per event_id (the earliest offset), minus ids already in silver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy("event_id").orderBy("topic", "partition", "offset")
    new = (
        new.withColumn("_rn", F.row_number().over(first)).filter("_rn = 1").drop("_rn")
    )
    if history is not None:
        new = new.join(history.select("event_id"), "event_id", "left_anti")
    return new


def with_features(events):
    """Add FEATURE_COLUMNS to ``events`` (which must hold every user's relevant history)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ts = F.col("event_time").cast("double")
    by_user = Window.partitionBy("user_id")
    ordered = by_user.orderBy("_ts", "topic", "partition", "offset")
    prior = ordered.rowsBetween(Window.unboundedPreceding, -1)

    def last(seconds):
        return by_user.orderBy("_ts").rangeBetween(-seconds, 0)

    failed = (F.col("event_type") == "login") & (F.col("success") == F.lit(False))
    device = F.concat_ws("|", "device_type", "user_agent")
    angle = F.col("hour_of_day") * (2 * math.pi / 24)
    mean_hour = (
        F.atan2(F.avg(F.sin(angle)).over(prior), F.avg(F.cos(angle)).over(prior))
        * (24 / (2 * math.pi))
        + 24
    ) % 24
    hour_gap = F.abs(F.col("hour_of_day") - mean_hour)
    prior_amount = F.avg(
        F.when(F.col("event_type") == "purchase", F.col("amount"))
    ).over(prior)
    prior_bytes = F.avg("bytes_transferred").over(prior)
    has_history = F.count(F.lit(1)).over(prior) > 0

    return (
        events.withColumn("_ts", ts)
        .withColumn("hour_of_day", F.hour("event_time"))
        .withColumn("events_1m", F.count(F.lit(1)).over(last(60)))
        .withColumn("events_5m", F.count(F.lit(1)).over(last(300)))
        .withColumn("failed_logins_10m", F.sum(failed.cast("int")).over(last(600)))
        .withColumn(
            "distinct_ips_1h", F.size(F.collect_set("ip_address").over(last(3600)))
        )
        .withColumn(
            "distinct_countries_24h", F.size(F.collect_set("country").over(last(86400)))
        )
        .withColumn(
            "seconds_since_prev",
            F.least(
                F.coalesce(F.col("_ts") - F.lag("_ts").over(ordered), F.lit(MAX_GAP_S)),
                F.lit(MAX_GAP_S),
            ).cast("double"),
        )
        .withColumn(
            "is_new_country",
            (
                has_history
                & ~F.array_contains(
                    F.collect_set("country").over(prior), F.col("country")
                )
            ).cast("int"),
        )
        .withColumn(
            "is_new_device",
            (
                has_history
                & ~F.array_contains(F.collect_set(device).over(prior), device)
            ).cast("int"),
        )
        .withColumn(
            "is_new_ip",
            (
                has_history
                & ~F.array_contains(
                    F.collect_set("ip_address").over(prior), F.col("ip_address")
                )
            ).cast("int"),
        )
        .withColumn(
            "hour_deviation",
            F.coalesce(F.least(hour_gap, 24 - hour_gap), F.lit(0.0)).cast("double"),
        )
        .withColumn(
            "amount_vs_user_mean",
            F.when(F.col("event_type") != "purchase", F.lit(0.0))
            .when(prior_amount.isNull() | (prior_amount == 0), F.lit(1.0))
            .otherwise(F.least(F.col("amount") / prior_amount, F.lit(MAX_RATIO))),
        )
        .withColumn(
            "amount_log",
            F.when(
                F.col("event_type") == "purchase",
                F.log1p(F.coalesce("amount", F.lit(0.0))),
            ).otherwise(F.lit(0.0)),
        )
        .withColumn("bytes_log", F.log1p(F.coalesce("bytes_transferred", F.lit(0))))
        .withColumn(
            "bytes_vs_user_mean",
            F.when(F.col("bytes_transferred").isNull(), F.lit(0.0))
            .when(prior_bytes.isNull() | (prior_bytes == 0), F.lit(1.0))
            .otherwise(
                F.least(F.col("bytes_transferred") / prior_bytes, F.lit(MAX_RATIO))
            ),
        )
        .withColumn("duration_ms_log", F.log1p(F.coalesce("duration_ms", F.lit(0))))
        .withColumn("is_failed_login", failed.cast("int"))
        .drop("_ts")
    )


def silver_rows(new, history):
    """Feature rows for the ``new`` bronze rows not yet in silver, using ``history``."""
    from pyspark.sql import functions as F

    new = dedupe_new(new.select(*EVENT_COLUMNS), history)
    events = new.withColumn("_new", F.lit(True))
    if history is not None:
        users = new.select("user_id").distinct()
        past = history.join(F.broadcast(users), "user_id").select(*EVENT_COLUMNS)
        events = events.unionByName(past.withColumn("_new", F.lit(False)))
    featured = with_features(events).filter("_new").drop("_new")
    return featured.select(
        *EVENT_COLUMNS,
        *[
            F.col(c).cast("double").alias(c, metadata={"comment": FEATURES[c]})
            for c in FEATURE_COLUMNS
        ],
        F.current_timestamp().alias("silver_processed_at"),
    )
