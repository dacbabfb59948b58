"""What the enrichment step reads and writes besides the LLM calls: the anomalies with
their silver context, the batches' drifted features, the enriched rows' schema, the rows a
later run explains again, and the settings the last run sent (the evaluation reads them
too)."""

from datetime import UTC, datetime, timedelta

from dagster import AssetKey

from anomaly_assets.core import delta_sql
from anomaly_assets.core.pruning import (
    days_predicate,
    event_days,
    event_spans,
    spans_predicate,
)
from anomaly_assets.enrichment.grouping import EXAMPLE_FIELDS
from anomaly_assets.enrichment.statuses import RETRYABLE
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.silver.features import EVENT_COLUMNS, GOLD_EVENT_COLUMNS

#: How far back a run looks for rows due a retry when no run has completed since retries
#: began to be recorded.
RETRY_FALLBACK = timedelta(days=7)


ENRICHED_SCHEMA = (
    "event_id string, batch_id string, user_id string, event_type string, "
    "event_time timestamp, anomaly_score double, severity_percentile double, "
    "anomaly_status string, top_features array<string>, group_key string, group_size int, "
    "call_id string, error string, raw_response string, prompt_tokens int, "
    "completion_tokens int, latency_ms double, attempts int, enrichment_status string, "
    "summary string, user_intent string, risk_level string, risk_explanation string, "
    "confidence double, top_factors array<string>, recommended_action string, "
    "provider string, model string, prompt_version string, enriched_at timestamp, "
    "step_seconds double, failed_runs int, will_retry boolean, "
    "attempt_history array<struct<run_id:string,at:timestamp,status:string,error:string>>, "
    "prompt_name string, trace_id string"
)


CACHE_SCHEMA = (
    "prompt_version string, model string, group_key string, explanation_json string, "
    "created_at timestamp, cache_key string, provider string, evidence_fingerprint string"
)


#: Event fields joined from silver for the prompt's examples: those gold does not carry.
SILVER_FIELDS = (
    "event_id",
    *(f for f in EXAMPLE_FIELDS if f in EVENT_COLUMNS and f not in GOLD_EVENT_COLUMNS),
)


def load_anomalies(anomalies, silver):
    """``anomalies`` (gold rows) with the silver fields the prompt examples use, as pandas;
    silver is read for the anomalies' days only."""
    days = event_days(anomalies)
    fields = silver.filter(days_predicate("event_time", days)).select(*SILVER_FIELDS)
    return anomalies.join(fields, "event_id", "left").toPandas()


def enriched_rows_frame(rows: list[dict], step_seconds: float):
    """Enriched rows as pandas, stamped with the step's runtime (for the evaluation)."""
    import pandas as pd

    names = [c.split()[0] for c in ENRICHED_SCHEMA.split(", ")]
    return pd.DataFrame(
        [{**r, "step_seconds": step_seconds} for r in rows], columns=names
    )


def drift_by_batch(drift_table, batches) -> dict[str, list[str]]:
    if drift_table is None:
        return {}
    rows = drift_table.filter(drift_table.batch_id.isin(batches) & drift_table.drifted)
    out: dict[str, list[str]] = {}
    for r in rows.select("batch_id", "feature").collect():
        out.setdefault(r["batch_id"], []).append(r["feature"])
    return out


def sent_settings(settings) -> dict:
    """What decided the groups and what their calls sent, as JSON: the shadow and the
    comparisons explain the same anomalies the same way (redaction included)."""
    from dataclasses import asdict

    return {**asdict(settings), "redact_columns": sorted(settings.redact_columns)}


def settings_sent_last(context, enriched: AssetKey, look_back: int = 50):
    """The EnrichmentSettings of the latest materialisation of ``enriched`` (a stream's
    gold_events_enriched) that explained anything (runs with nothing new record none), or
    the defaults."""
    # imports pandas: kept out of the definitions' load
    from anomaly_assets.enrichment.enrich import EnrichmentSettings

    records = context.instance.fetch_materializations(enriched, limit=look_back).records
    for record in records:  # newest first
        recorded = record.asset_materialization.metadata.get("enrichment_settings")
        if recorded is not None:
            data = dict(recorded.value)
            return EnrichmentSettings(
                **{**data, "redact_columns": set(data["redact_columns"])}
            )
    return EnrichmentSettings()


def retry_candidates(
    lakehouse: LakehouseResource, last_run_at: str | None
) -> list[tuple]:
    """(event_id, event_time) of the enriched rows to explain again: failed, with runs
    left. Every such row was written by the last run that completed (each run rewrites the
    rows it tries), so only rows written since it started are read, and Delta skips the
    files of older runs by their ``enriched_at`` statistics. Without that time (a first run
    since retries exist) the last RETRY_FALLBACK is read."""
    from pyspark.sql import functions as F

    table = lakehouse.read("gold_events_enriched")
    if table is None:
        return []
    since = (
        datetime.fromisoformat(last_run_at) - timedelta(minutes=5)  # clock slack
        if last_run_at
        else datetime.now(UTC) - RETRY_FALLBACK
    )
    # Rows written before retries existed have no will_retry: their failures count once.
    will = F.col("will_retry") if "will_retry" in table.columns else F.lit(None)
    rows = table.filter(
        (F.col("enriched_at") >= F.lit(since))
        & F.col("enrichment_status").isin(*RETRYABLE)
        & F.coalesce(will, F.lit(True))
    )
    return [tuple(r) for r in rows.select("event_id", "event_time").collect()]


def gold_rows(lakehouse: LakehouseResource, keys: list[tuple]):
    """The current gold rows of ``keys`` (event_id, event_time) that are still anomalies;
    only the files of their event days are read."""
    from pyspark.sql import functions as F

    gold = lakehouse.read("gold_anomaly_predictions")
    return gold.filter(
        days_predicate("event_time", {t.date() for _, t in keys})
    ).filter(F.col("event_id").isin([k for k, _ in keys]) & F.col("is_anomaly"))


def previous_attempts(lakehouse: LakehouseResource, anomalies) -> dict[str, dict]:
    """event_id -> its enriched row's failed_runs and attempt_history, for the
    ``anomalies`` (pandas) about to be enriched."""
    from pyspark.sql import functions as F

    table = lakehouse.read("gold_events_enriched")
    if table is None or "attempt_history" not in table.columns or anomalies.empty:
        return {}
    import pandas as pd

    days = set(pd.to_datetime(anomalies["event_time"], utc=True).dt.date)
    rows = (
        table.filter(days_predicate("event_time", days))
        .filter(F.col("event_id").isin(list(anomalies["event_id"])))
        .select("event_id", "failed_runs", "attempt_history")
        .collect()
    )
    return {
        r["event_id"]: {
            "failed_runs": r["failed_runs"],
            "attempt_history": [a.asDict() for a in r["attempt_history"] or []],
        }
        for r in rows
    }


def drop_revoked(lakehouse: LakehouseResource, revoked) -> int:
    """Delete the enriched rows of the ``revoked`` events (event_id, event_time), which a
    corrected score no longer flags; returns how many events were revoked. Only the files
    overlapping their event times are read."""
    spans = event_spans(revoked)
    if not spans or not lakehouse.exists("gold_events_enriched"):
        return 0
    ids = revoked.select("event_id")
    delta_sql.merge(
        lakehouse.spark_session,
        lakehouse.path("gold_events_enriched"),
        ids,
        f"t.event_id = s.event_id AND ({spans_predicate('t.event_time', spans)})",
        insert=False,
        delete=True,
    )
    return ids.count()
