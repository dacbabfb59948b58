"""Data exfiltration: more bytes than the user moves, in one call or over an hour. Each is
measured against the user's typical transfer of an hour before, so a burst of transfers
does not raise its own baseline call by call."""

from pyspark.sql import functions as F

from anomaly_assets.silver.catalogue.feature import Feature
from anomaly_assets.silver.catalogue.windows import capped_ratio, last, typical

THREAT = "data_exfiltration"


def _typical_transfer():
    return typical("bytes_log_e9", hour_ago=True)


def _bytes_1h():
    # A double: an hour of contract-valid transfers (each up to 2^63 - 1 bytes) would
    # overflow a long sum, an error under ANSI SQL that would stop silver on every retry.
    moved = F.coalesce(F.col("bytes_transferred"), F.lit(0)).cast("double")
    return F.sum(moved).over(last(3600))


def _transfer_1h_vs_typical():
    mean_1h = _bytes_1h() / F.count("bytes_transferred").over(last(3600))
    return F.when(_bytes_1h() == 0, F.lit(0.0)).otherwise(
        capped_ratio(mean_1h, _typical_transfer())
    )


def _bytes_vs_user_mean():
    return F.when(F.col("bytes_transferred").isNull(), F.lit(0.0)).otherwise(
        capped_ratio(F.col("bytes_transferred"), _typical_transfer())
    )


FEATURES = (
    Feature(
        "bytes_1h_log",
        "log1p of the bytes the user moved in the last hour (downloads and API "
        "calls alike)",
        ("bytes_transferred",),
        lambda: F.log1p(_bytes_1h()),
    ),
    Feature(
        "transfer_1h_vs_typical",
        "the user's mean transfer of the last hour (a plain mean, so "
        "one large transfer shows) / their typical transfer of an hour before (as "
        "bytes_vs_user_mean; 0 when none moved; 1 without history; capped at 1e6): many "
        "ordinary transfers in an hour do not raise it, larger ones do",
        ("bytes_transferred",),
        _transfer_1h_vs_typical,
        log_scaled=True,
    ),
    Feature(
        "bytes_vs_user_mean",
        "bytes transferred / the user's typical transfer of an hour "
        "before (the geometric mean of their transfers at least an hour old: expm1 of the mean "
        "log1p; 1 if none; 0 when no data; capped at 1e6): a burst does not raise its own "
        "baseline",
        ("bytes_transferred",),
        _bytes_vs_user_mean,
        log_scaled=True,
    ),
    Feature(
        "bytes_log",
        "log1p of bytes transferred (0 when the event moves no data)",
        ("bytes_transferred",),
        lambda: F.log1p(F.coalesce("bytes_transferred", F.lit(0))),
    ),
)
