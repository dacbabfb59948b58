"""Credential stuffing: bursts of failed logins, often from many addresses. Counted on
logins only: the user's own clicks while someone else stuffs their password are not the
attack."""

from pyspark.sql import functions as F

from anomaly_assets.silver.catalogue.feature import Feature
from anomaly_assets.silver.catalogue.windows import last
from anomaly_assets.silver.event_exprs import failed_login

THREAT = "credential_stuffing"
_WINDOW_S = 600


def _is_login():
    return F.coalesce(F.col("event_type") == "login", F.lit(False))


def _failed_logins():
    return F.when(
        _is_login(), F.sum(failed_login().cast("int")).over(last(_WINDOW_S))
    ).otherwise(0)


def _failed_login_ips():
    failed_ips = F.collect_set(F.when(failed_login(), F.col("ip_address")))
    return F.when(_is_login(), F.size(failed_ips.over(last(_WINDOW_S)))).otherwise(0)


def _failed_login_ratio():
    logins = F.sum(_is_login().cast("int")).over(last(_WINDOW_S))
    return F.when(_is_login(), _failed_logins() / (logins + 1)).otherwise(F.lit(0.0))


FEATURES = (
    Feature(
        "failed_logins_10m",
        "for a login: the user's failed logins in the last 10 minutes, this "
        "one included (0 for other events)",
        ("event_type", "success"),
        _failed_logins,
    ),
    Feature(
        "failed_login_ips_10m",
        "for a login: distinct IP addresses of the user's failed logins "
        "in the last 10 minutes (0 for other events)",
        ("event_type", "success", "ip_address"),
        _failed_login_ips,
    ),
    Feature(
        "failed_login_ratio_10m",
        "for a login: failed logins / (logins + 1) by the user in the "
        "last 10 minutes, shrunk so one mistyped password is not a 100 % failure rate (0 for "
        "other events)",
        ("event_type", "success"),
        _failed_login_ratio,
    ),
)
