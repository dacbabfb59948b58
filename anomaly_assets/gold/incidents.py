"""gold_user_incidents: a user's anomalies close in time, as one incident to triage.

An incident is a maximal run of one user's anomalies in which each follows the one before
within ``gap_s`` (a 40-event bot burst is one incident, not 40 rows). Incidents are kept
incrementally: when gold's anomalies of a user change (new, re-scored or no longer
anomalous), only the span those changes can affect is rebuilt: the changed rows' times
widened by the gap, then to the whole incidents that span touches. Another incident of the
user lies more than the gap away from every changed row and from every rebuilt incident, so
it cannot merge with them and is left as it is. The rebuilt span replaces exactly the
incidents inside it, in one Delta transaction (``replaceWhere``), so the table equals what
one pass over all of gold would give, whatever the batches and their order.
"""

from datetime import UTC, datetime

from anomaly_assets.core import delta_sql
from anomaly_assets.core.pruning import days_between, days_predicate
from anomaly_assets.gold.attack import pinned, tactics_of
from anomaly_assets.silver.catalogue import THREAT_FEATURES

INCIDENT_SCHEMA = (
    "incident_id string, user_id string, first_seen timestamp, last_seen timestamp, "
    "event_count bigint, event_ids array<string>, event_types array<string>, "
    "top_features array<string>, max_severity double, max_score double, status string, "
    "batch_ids array<string>, threat_types array<string>, "
    "attack_techniques array<string>, attack_tactics array<string>"
)
#: An incident's statuses, lowest first (CRITICAL if any of its events is).
STATUSES = ("WARNING", "CRITICAL")
INCIDENT_COLUMNS = tuple(c.split()[0] for c in INCIDENT_SCHEMA.split(", "))
#: Features named in an incident: the ones most often among its events' top features.
TOP_FEATURES = 3


def _shift(column: str, seconds: float):
    from pyspark.sql import functions as F

    return F.col(column) + F.expr(f"INTERVAL {float(seconds)} SECONDS")


def affected_spans(changed, incidents, gap_s: float):
    """Per user with changed gold rows: ``(user_id, lo, hi)``, the event-time span to
    rebuild (the changed rows' span plus the gap each side, widened to the whole stored
    incidents it touches)."""
    from pyspark.sql import functions as F

    spans = changed.groupBy("user_id").agg(
        F.min("event_time").alias("t_lo"), F.max("event_time").alias("t_hi")
    )
    spans = spans.select(
        "user_id",
        _shift("t_lo", -gap_s).alias("lo"),
        _shift("t_hi", gap_s).alias("hi"),
    )
    if incidents is None:
        return spans
    touched = (
        incidents.join(spans, "user_id")
        .filter(
            (F.col("last_seen") >= F.col("lo")) & (F.col("first_seen") <= F.col("hi"))
        )
        .groupBy("user_id")
        .agg(F.min("first_seen").alias("i_lo"), F.max("last_seen").alias("i_hi"))
    )
    return spans.join(touched, "user_id", "left").select(
        "user_id",
        F.least("lo", F.coalesce("i_lo", "lo")).alias("lo"),
        F.greatest("hi", F.coalesce("i_hi", "hi")).alias("hi"),
    )


def _map(mapping: dict):
    """A Spark map literal of ``mapping`` (sorted, so a plan is the same every run)."""
    from itertools import chain

    from pyspark.sql import functions as F

    return F.create_map(
        *chain.from_iterable(
            (F.lit(k), F.lit(v) if isinstance(v, str) else F.array(*map(F.lit, v)))
            for k, v in sorted(mapping.items())
        )
    )


def event_threat():
    """A gold row's threat type: the threat of its strongest top feature that belongs to
    one (silver's catalogue), or null when none does."""
    from pyspark.sql import functions as F

    threat_of = _map({f: t for t, fs in THREAT_FEATURES.items() for f in fs})
    threats = F.filter(
        F.transform(F.coalesce("top_features", F.array()), lambda f: threat_of[f]),
        lambda t: t.isNotNull(),
    )
    return F.try_element_at(threats, F.lit(1))


def attack_columns(threat_types, techniques: dict):
    """(technique ids, tactic names) of an incident's ``threat_types`` column under the
    mapping ``techniques`` (threat type -> ids), each sorted and once."""
    from pyspark.sql import functions as F

    ids_of = _map({t: list(ids) for t, ids in techniques.items()})
    ids = F.array_sort(
        F.array_distinct(
            F.flatten(
                F.transform(
                    threat_types,
                    lambda t: F.coalesce(ids_of[t], F.array().cast("array<string>")),
                )
            )
        )
    )
    tactics_by_id = _map({i: tactics_of([i]) for i in pinned()["techniques"]})
    tactics = F.array_sort(
        F.array_distinct(F.flatten(F.transform(ids, lambda i: tactics_by_id[i])))
    )
    return ids, tactics


def build_incidents(anomalies, gap_s: float, techniques: dict):
    """Incidents of ``anomalies`` (gold rows with is_anomaly): per user, a new incident
    starts where an anomaly follows the previous one by more than ``gap_s``. Its threat
    types are its events' (``event_threat``), with their ATT&CK ``techniques``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    anomalies = anomalies.withColumn("_threat", event_threat())
    by_time = Window.partitionBy("user_id").orderBy("event_time", "event_id")
    gap = F.col("event_time").cast("double") - F.lag(
        F.col("event_time").cast("double")
    ).over(by_time)
    starts = F.when(gap.isNull() | (gap > gap_s), 1).otherwise(0)
    rows = anomalies.withColumn(
        "_n", F.sum(starts).over(by_time.rowsBetween(Window.unboundedPreceding, 0))
    )
    ordered = F.sort_array(F.collect_list(F.struct("event_time", "event_id")))
    incidents = rows.groupBy("user_id", "_n").agg(
        F.min("event_time").alias("first_seen"),
        F.max("event_time").alias("last_seen"),
        F.count(F.lit(1)).alias("event_count"),
        F.transform(ordered, lambda e: e["event_id"]).alias("event_ids"),
        F.array_sort(F.collect_set("event_type")).alias("event_types"),
        F.max("severity_percentile").alias("max_severity"),
        F.max("anomaly_score").alias("max_score"),
        F.when(F.max((F.col("status") == "CRITICAL").cast("int")) == 1, "CRITICAL")
        .otherwise("WARNING")
        .alias("status"),
        F.array_sort(F.collect_set("batch_id")).alias("batch_ids"),
        F.array_sort(F.collect_set("_threat")).alias("threat_types"),
    )
    ids, tactics = attack_columns(F.col("threat_types"), techniques)
    incidents = incidents.withColumns(
        {"attack_techniques": ids, "attack_tactics": tactics}
    )
    # Most frequent top features, ties by name, so a rebuild names the same ones.
    counted = (
        rows.select("user_id", "_n", F.explode("top_features").alias("feature"))
        .groupBy("user_id", "_n", "feature")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    rank = Window.partitionBy("user_id", "_n").orderBy(F.desc("n"), "feature")
    top = (
        counted.withColumn("_r", F.row_number().over(rank))
        .filter(F.col("_r") <= TOP_FEATURES)
        .groupBy("user_id", "_n")
        .agg(
            F.transform(
                F.sort_array(F.collect_list(F.struct("_r", "feature"))),
                lambda e: e["feature"],
            ).alias("top_features")
        )
    )
    incidents = incidents.join(top, ["user_id", "_n"], "left")
    incident_id = F.substring(
        F.sha2(F.concat_ws("/", "user_id", F.col("event_ids")[0]), 256), 1, 32
    )
    return incidents.select(
        incident_id.alias("incident_id"),
        *[c for c in INCIDENT_COLUMNS if c != "incident_id"],
    ).select(*[F.col(c).cast(t) for c, t in _types()])


def _types():
    return [tuple(c.split(maxsplit=1)) for c in INCIDENT_SCHEMA.split(", ")]


def spans_predicate(spans: list) -> str:
    """SQL selecting the stored incidents inside the rebuilt ``spans`` (user_id, lo, hi)."""
    return (
        " OR ".join(
            f"(user_id = {delta_sql.literal(s['user_id'])} AND last_seen >= {delta_sql.literal(s['lo'])} "
            f"AND first_seen <= {delta_sql.literal(s['hi'])})"
            for s in spans
        )
        or "FALSE"
    )


def collect_spans(df, lo: str, hi: str) -> list[dict]:
    """``df``'s (user_id, ``lo``, ``hi``) rows as dicts of UTC datetimes named lo / hi.

    The times leave Spark as UTC text: collect() would turn them into naive datetimes in
    the Python process's own time zone, which need not be the session's UTC."""
    from pyspark.sql import functions as F

    utc = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"
    rows = df.select(
        "user_id",
        F.date_format(lo, utc).alias("lo"),
        F.date_format(hi, utc).alias("hi"),
    ).collect()
    return [
        {
            "user_id": r["user_id"],
            "lo": datetime.fromisoformat(r["lo"]).replace(tzinfo=UTC),
            "hi": datetime.fromisoformat(r["hi"]).replace(tzinfo=UTC),
        }
        for r in rows
    ]


def anomalies_in(gold, spans: list[dict]):
    """Gold's anomalies of each span's user between its lo and hi (kept as columns); only
    the spans' event days are read."""
    from pyspark.sql import functions as F

    days = {d for s in spans for d in days_between(s["lo"].date(), s["hi"].date())}
    bounds = gold.sparkSession.createDataFrame(
        [(s["user_id"], s["lo"], s["hi"]) for s in spans],
        "user_id string, lo timestamp, hi timestamp",
    )
    return (
        gold.filter(days_predicate("event_time", days))
        .filter("is_anomaly")
        .join(F.broadcast(bounds), "user_id")
        .filter(F.col("event_time").between(F.col("lo"), F.col("hi")))
    )


def rebuild(gold, changed, incidents, gap_s: float, techniques: dict):
    """(rebuilt incidents, the spans they replace as collected rows); None when no gold
    row of the change concerns an anomaly, now or before."""
    spans = collect_spans(affected_spans(changed, incidents, gap_s), "lo", "hi")
    if not spans:
        return None
    anomalies = anomalies_in(gold, spans).drop("lo", "hi")
    return build_incidents(anomalies, gap_s, techniques), spans


def write(path: str, rebuilt, exists: bool) -> None:
    """Replace the incidents inside the rebuilt spans with the rebuilt ones, in one Delta
    transaction (a crash leaves the old incidents, and the retry rebuilds them again)."""
    incidents, spans = rebuilt
    # mergeSchema: a table written before the threat and ATT&CK columns gains them (its
    # older incidents keep nulls there until a change rebuilds them).
    writer = (
        incidents.write.format("delta").mode("overwrite").option("mergeSchema", "true")
    )
    if exists:
        writer = writer.option("replaceWhere", spans_predicate(spans))
    writer.save(path)
