"""High-value purchases: far above what the user usually spends or buys."""

from pyspark.sql import functions as F

from anomaly_assets.silver.catalogue.feature import Feature
from anomaly_assets.silver.catalogue.windows import capped_ratio, typical

THREAT = "high_value_purchase"


def _amount_vs_user_mean():
    return F.when(F.col("event_type") != "purchase", F.lit(0.0)).otherwise(
        capped_ratio(F.col("amount"), typical("amount_log_e9"))
    )


def _amount_log():
    return F.when(
        F.col("event_type") == "purchase", F.log1p(F.coalesce("amount", F.lit(0.0)))
    ).otherwise(F.lit(0.0))


def _items_log():
    return F.when(
        F.col("event_type").isin("purchase", "add_to_cart"),
        F.log1p(F.coalesce("items", F.lit(0))),
    ).otherwise(F.lit(0.0))


FEATURES = (
    Feature(
        "amount_vs_user_mean",
        "purchase amount / the user's typical earlier purchase (their "
        "geometric mean: expm1 of the mean log1p; 1 if none; "
        "0 for other events; capped at 1e6)",
        ("event_type", "amount"),
        _amount_vs_user_mean,
        log_scaled=True,
    ),
    Feature(
        "amount_log",
        "log1p of the purchase amount (0 for other events)",
        ("event_type", "amount"),
        _amount_log,
    ),
    Feature(
        "items_log",
        "log1p of the items of a purchase or cart addition (0 for other events)",
        ("event_type", "items"),
        _items_log,
    ),
)
