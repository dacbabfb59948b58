"""Bot activity: scripted clients keep a fast, steady beat and say what they are."""

from pyspark.sql import functions as F

from anomaly_assets.silver.catalogue.feature import Feature
from anomaly_assets.silver.catalogue.windows import events_in, last

THREAT = "bot_activity"
#: Case-insensitive pattern of automation user agents (is_automation_agent).
AUTOMATION_AGENTS = (
    r"(?i)(headless|phantomjs|selenium|webdriver|puppeteer|playwright|python-requests|"
    r"python-urllib|aiohttp|httpx|curl/|wget/|go-http-client|okhttp|java/|"
    r"apache-httpclient|libwww-perl|scrapy|node-fetch|axios/|postmanruntime|"
    r"\bbot\b|crawler|spider)"
)


def _gap_regularity():
    """Coefficient of variation of the gaps between consecutive events of the user's last
    minute. Each event's ``_gap`` reaches back to its previous event, so the earliest
    event's gap reaches out of the minute (a pause before a burst): it is taken out as the
    window's gaps summed minus its span, exactly and whatever the ties at its start.
    Squares are summed over gaps of at most a minute only, so an hour's pause cannot swamp
    a second's beat in floating point."""
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
    sd = F.sqrt(F.greatest(F.when(n > 0, squares / n) - mean * mean, F.lit(0.0)))
    return F.when((n >= 3) & (mean > 0), sd / mean).otherwise(F.lit(1.0))


def _automation_agent():
    return F.coalesce(F.col("user_agent").rlike(AUTOMATION_AGENTS), F.lit(False)).cast(
        "int"
    )


def _duration_log():
    return F.log1p(F.coalesce("duration_ms", F.lit(0)))


FEATURES = (
    Feature(
        "events_10s",
        "events by the user in the 10 seconds up to and including this one",
        (),
        lambda: events_in(10),
        log_scaled=True,
    ),
    Feature(
        "events_1m",
        "events by the user in the minute up to and including this one",
        (),
        lambda: events_in(60),
        log_scaled=True,
    ),
    Feature(
        "gap_regularity_1m",
        "coefficient of variation of the gaps between consecutive events "
        "of the user's last minute (1 with fewer than 3; the pause before the minute's first "
        "event is not one of them): scripts keep a steady beat, people do not",
        (),
        _gap_regularity,
        stage=2,
    ),
    Feature(
        "is_automation_agent",
        "1 if the user agent names a headless browser, an HTTP library "
        "or a scripted client",
        ("user_agent",),
        _automation_agent,
    ),
    Feature(
        "duration_ms_log",
        "log1p of the event's duration in milliseconds",
        ("duration_ms",),
        _duration_log,
    ),
)
