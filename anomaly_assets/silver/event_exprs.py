"""Column expressions over events that features and profiles both read, so neither has to
import the other."""


def device_expr():
    """Column: the device as the user's profile knows it (type and user agent)."""
    from pyspark.sql import functions as F

    return F.concat_ws("|", "device_type", "user_agent")


def failed_login():
    """Column: a login that failed. Its place is the attacker's as often as the user's, so
    the user's known places, recent countries and travel learn only from the other events."""
    from pyspark.sql import functions as F

    return F.coalesce(
        (F.col("event_type") == "login") & (F.col("success") == F.lit(False)),
        F.lit(False),
    )
