"""gold_events_enriched (+ llm_explanation_cache): every anomaly with an LLM explanation.

The gold rows inserted or re-scored since the enrichment's cursor (Change Data Feed) are
read; those that are anomalies are (re-)enriched and upserted, those that stopped being
anomalies leave the table; rows earlier runs could not explain are explained again, within
``max_runs``. Anomalies are grouped by (segment, top-2 contributing features); one call
explains a group, within a budget of groups per run; grounded, figure-free explanations are
cached in Delta by (provider, model, prompt version, group key, evidence fingerprint) and
reused in later batches. The LLM runs in the driver: groups are few, and a thread pool keeps
several requests in flight.
"""

import time
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    MetadataValue,
    Output,
    multi_asset,
)
from pydantic import Field

from anomaly_assets.core import cursors, spark_actions
from anomaly_assets.core.incremental import nothing_new
from anomaly_assets.core.lineage import column_lineage
from anomaly_assets.core.pruning import days_predicate, event_days
from anomaly_assets.enrichment.grouping import EXAMPLE_FIELDS
from anomaly_assets.enrichment.prompt_registry import PRODUCTION, PROMPT_NAME
from anomaly_assets.enrichment.resource import LLMResource, for_stream
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import EVAL_EXPERIMENT, MlflowResource
from anomaly_assets.silver.features import EVENT_COLUMNS, GOLD_EVENT_COLUMNS
from anomaly_assets.stream import DEFAULT_STREAM, Stream


def lineage(stream: Stream) -> dict:
    """Columns carried from gold_anomaly_predictions (status is renamed anomaly_status)."""
    return column_lineage(
        stream.key("gold_anomaly_predictions"),
        ["event_id", "batch_id", "user_id", "event_type", "event_time"]
        + ["anomaly_score", "severity_percentile", "top_features"],
        {"anomaly_status": ["status"]},
    )


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


class EnrichmentConfig(Config):
    mode: str = Field(
        default="group",
        description="'group' (one call per pattern) or "
        "'event' (one call per anomaly, for small volumes).",
    )
    max_groups: int = Field(
        default=50,
        description="Budget: calls per run, spent on groups with a CRITICAL anomaly "
        "first, then by size x severity.",
    )
    examples_per_group: int = Field(default=3)
    redact_columns: list[str] = Field(
        default_factory=lambda: ["user_id", "session_id", "ip_address"],
        description="Never leave the process (sent as <redacted>).",
    )
    max_string_chars: int = Field(
        default=200, description="Longer strings are truncated."
    )
    segment_column: str = Field(default="event_type")
    prompt_name: str = Field(
        default=PROMPT_NAME,
        description="Prompt in MLflow's Prompt Registry (seeded from enrichment/prompts/ when "
        "the registry does not have it).",
    )
    prompt_alias: str = Field(
        default=PRODUCTION,
        description="Alias whose version is used, read afresh each run: promoting or "
        "rolling back (anomaly-prompts) is moving it.",
    )
    trace_calls: bool = Field(
        default=True,
        description="An MLflow trace per call (redacted prompt, answer, tokens, latency, "
        "cost, status) in the ai_enrichment_eval experiment.",
    )
    cache_ttl_hours: float = Field(
        default=168.0, description="Cached explanations expire."
    )
    max_runs: int = Field(
        default=3,
        ge=1,
        description="Runs in a row that may fail to explain an anomaly (error, "
        "endpoint_unreachable, skipped_budget, invalid, ungrounded) before the failure is "
        "final; until then each run explains it again.",
    )


CONSUMER = "gold_events_enriched"
#: How far back the first run since retries exist looks for failed rows.
RETRY_FALLBACK = timedelta(days=7)
OUTPUTS = ("gold_events_enriched", "llm_explanation_cache")


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


def _drift_by_batch(drift_table, batches) -> dict[str, list[str]]:
    if drift_table is None:
        return {}
    rows = drift_table.filter(drift_table.batch_id.isin(batches) & drift_table.drifted)
    out: dict[str, list[str]] = {}
    for r in rows.select("batch_id", "feature").collect():
        out.setdefault(r["batch_id"], []).append(r["feature"])
    return out


def build_enrichment(stream: Stream = DEFAULT_STREAM):
    """gold_events_enriched and llm_explanation_cache of ``stream``."""

    @multi_asset(
        deps=[
            stream.key("gold_anomaly_predictions"),
            stream.key("silver_events"),
            stream.key("gold_batch_drift"),
        ],
        outs={
            "gold_events_enriched": stream.table_out(
                "ai",
                "team:ml-platform",
                {"spark", "delta", "openai"},
                description="Every anomaly with its group's Pydantic-validated LLM explanation "
                "(summary, intent, risk, confidence, top factors, action), its own score and "
                "top features, and the call's status, tokens, latency, provider and prompt "
                "version.",
                metadata={
                    "delta/write_mode": "merge_upsert",
                    "delta/merge_keys": ["event_id"],
                    "delta/compare_columns": [
                        "anomaly_status",
                        "anomaly_score",
                        "call_id",
                        "enrichment_status",
                        "failed_runs",
                    ],
                    "delta/prune_days_column": "event_time",
                },
            ),
            "llm_explanation_cache": stream.table_out(
                "ai",
                "team:ml-platform",
                {"delta", "openai"},
                description="Explanations by (provider, model, prompt version, group key, "
                "evidence fingerprint), reused by later batches and re-runs until they "
                "expire; only grounded answers that state no batch-specific figure.",
                metadata={"delta/write_mode": "append"},
            ),
        },
        name=stream.named("enrichment"),
        pool=stream.pool("enrichment"),
    )
    def enrichment(
        context: AssetExecutionContext,
        config: stream.config(EnrichmentConfig, "enrichment"),
        lakehouse: LakehouseResource,
        llm: LLMResource,
        mlflow_settings: MlflowResource,
    ):
        with spark_actions.step(context):
            yield from explain(
                context,
                config,
                stream.lakehouse(lakehouse),
                for_stream(stream, llm),
                mlflow_settings,
                stream,
            )

    return enrichment


enrichment = build_enrichment()


def explain(context, config: EnrichmentConfig, lakehouse, llm, mlflow_settings, stream):
    """Explain gold's new anomalies (and those due a retry); write them and the cache."""
    from anomaly_assets.enrichment import telemetry
    from anomaly_assets.enrichment.enrich import (
        EnrichmentSettings,
        cache_from_rows,
        enrich,
        with_attempts,
    )
    from anomaly_assets.enrichment.tracing import flush_traces

    t0 = time.perf_counter()
    prompt = registered_prompt(mlflow_settings, config.prompt_name, config.prompt_alias)
    explainer = llm.explainer()
    spark = lakehouse.spark_session
    pending = lakehouse.pending_changes(CONSUMER, "gold_anomaly_predictions")
    through = pending.through
    started = datetime.now(UTC)
    retry = retry_candidates(lakehouse, pending.cursor.state.get("last_run_at"))
    if pending.changes is None and not retry:
        yield from nothing_new(context, "gold_anomaly_predictions", through, OUTPUTS)
        return
    changes = revoked = flagged = None
    if pending.changes is not None:
        changes = cursors.latest_per_key(pending.changes, ["event_id"]).persist()
        # A re-scored row that is no longer an anomaly leaves the enriched table.
        revoked = changes.filter(
            "NOT is_anomaly AND _change_type = 'update_postimage'"
        ).select("event_id", "event_time")
        flagged = changes.filter("is_anomaly").drop("_change_type")
    if retry:
        again = gold_rows(lakehouse, retry)
        if changes is not None:  # this run's changes bring their own row
            again = again.join(changes.select("event_id"), "event_id", "left_anti")
        flagged = again if flagged is None else flagged.unionByName(again)
    flagged = flagged.persist()
    anomalies = load_anomalies(flagged, lakehouse.read("silver_events"))
    batches = sorted(set(anomalies["batch_id"]))
    retried = int(anomalies["event_id"].isin({k[0] for k in retry}).sum())
    if retried:
        context.log.info(
            f"Explaining again {retried:,} anomalies that earlier runs could not explain"
        )
    previous = previous_attempts(lakehouse, anomalies)
    cache_table = lakehouse.read("llm_explanation_cache")
    cache = {}
    # Entries written before keys held the provider and the evidence are never reused.
    if cache_table is not None and "cache_key" in cache_table.columns:
        cutoff = datetime.now(UTC) - timedelta(hours=config.cache_ttl_hours)
        fresh = cache_table.filter(
            (cache_table.provider == explainer.provider)
            & (cache_table.model == explainer.model)
            & (cache_table.prompt_version == prompt.key)
            & (cache_table.created_at >= cutoff)
        )
        cache = cache_from_rows(fresh.collect())
    settings = EnrichmentSettings(
        config.mode,
        config.max_groups,
        config.examples_per_group,
        set(config.redact_columns),
        config.max_string_chars,
        config.segment_column,
    )
    outcome = enrich(
        anomalies,
        explainer,
        prompt,
        settings,
        drift=_drift_by_batch(lakehouse.read("gold_batch_drift"), batches),
        cache=cache,
        max_concurrency=llm.max_concurrency,
        run_id=context.run_id,
        log=context.log.info,
        trace=call_tracer(
            context, mlflow_settings, explainer, prompt, llm.price_table(), batches
        )
        if config.trace_calls
        else None,
    )
    stats = outcome.stats
    if config.trace_calls:
        flush_traces()
    if getattr(explainer, "metrics", None):
        explainer.metrics.cache(stats["cache_hits"], stats["cache_misses"])
    telemetry.flush()
    context.log.info(
        f"Enriched {stats['anomalies']:,} anomalies of {len(batches)} batch(es) "
        f"with {explainer.provider}/{explainer.model}: {stats['status_counts']}"
    )
    meta = {
        "enrichment_settings": MetadataValue.json(sent_settings(settings)),
        "batches": MetadataValue.json(batches),
        "gold_version": through,
        "provider": explainer.provider,
        "model": explainer.model,
        "prompt_name": prompt.name,
        "prompt_version": prompt.version,
        "anomalies": stats["anomalies"],
        "groups": stats["groups"],
        "calls": stats["calls"],
        "cache_hits": stats["cache_hits"],
        "status_counts": MetadataValue.json(stats["status_counts"]),
        "prompt_tokens": stats["prompt_tokens"],
        "completion_tokens": stats["completion_tokens"],
        "llm_seconds": round(stats["seconds"], 2),
    }
    step_seconds = time.perf_counter() - t0
    rows = with_attempts(outcome.rows, previous, context.run_id, config.max_runs)
    rows = [{**r, "step_seconds": step_seconds} for r in rows]
    meta["retried"] = retried
    meta["will_retry"] = sum(r["will_retry"] for r in rows)
    yield Output(
        spark.createDataFrame(rows, ENRICHED_SCHEMA),
        "gold_events_enriched",
        metadata={**meta, "step_seconds": round(step_seconds, 2), **lineage(stream)},
    )
    yield Output(
        spark.createDataFrame(outcome.cache_entries, CACHE_SCHEMA),
        "llm_explanation_cache",
        metadata={
            "new_entries": len(outcome.cache_entries),
            "prompt": prompt.label,
        },
    )
    dropped = 0 if revoked is None else drop_revoked(lakehouse, revoked)
    if dropped:
        context.log.info(
            f"{dropped:,} re-scored events are no longer anomalies: their enriched "
            "rows, if any, were removed."
        )
    flagged.unpersist()
    if changes is not None:
        changes.unpersist()
    lakehouse.save_cursor(
        CONSUMER,
        "gold_anomaly_predictions",
        through,
        {"last_run_at": started.isoformat()},
    )


def sent_settings(settings) -> dict:
    """What decided the groups and what their calls sent, as JSON: the shadow and the
    comparisons explain the same anomalies the same way (redaction included)."""
    from dataclasses import asdict

    return {**asdict(settings), "redact_columns": sorted(settings.redact_columns)}


def settings_sent_last(context, enriched: AssetKey, look_back: int = 50):
    """The EnrichmentSettings of the latest materialisation of ``enriched`` (a stream's
    gold_events_enriched) that explained anything (runs with nothing new record none), or
    the defaults."""
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


def registered_prompt(mlflow_settings: MlflowResource, name: str, alias: str):
    """The prompt version behind ``alias`` in the registry, read afresh; a registry without
    the prompt is seeded with the default file behind ``production``."""
    from dagster import Failure
    from mlflow.exceptions import MlflowException

    from anomaly_assets.enrichment.prompt_registry import PromptRegistry

    registry = PromptRegistry(mlflow_settings.tracking_uri, name)
    try:
        prompt = registry.production() if alias == PRODUCTION else registry.load(alias)
    except MlflowException as exc:
        raise Failure(
            f"The prompt could not be read from MLflow at {mlflow_settings.tracking_uri} "
            f"({exc}); the run explains nothing until it can (a later run retries)."
        ) from exc
    if prompt is None:
        raise Failure(
            f"Prompt {name!r} has no alias {alias!r} in {mlflow_settings.tracking_uri}: "
            f"set one with `anomaly-prompts --name {name} promote VERSION` or choose "
            "another prompt_alias."
        )
    return prompt


def call_tracer(
    context, mlflow_settings, explainer, prompt, prices, batches, role=PRODUCTION
):
    """``trace(result, group_key)`` for ``enrich``: an MLflow trace per call, in the
    evaluation experiment. A trace that cannot be written costs its id, not the row."""
    from anomaly_assets.enrichment.tracing import log_call_trace

    try:
        experiment_id = mlflow_settings.ensure_experiment(EVAL_EXPERIMENT)
    except Exception as exc:  # noqa: BLE001 - tracing is an aid, never a failure
        context.log.warning(f"No traces this run: MLflow refused the experiment: {exc}")
        return None
    tags = {
        "dagster_run_id": context.run_id,
        "batches": ",".join(batches)[:250],
        "prompt_role": role,
    }

    def trace(result, group_key: str) -> str | None:
        try:
            return log_call_trace(
                result,
                experiment_id=experiment_id,
                explainer=explainer,
                prompt=prompt,
                group_key=group_key,
                prices=prices,
                tags=tags,
            )
        except Exception as exc:  # noqa: BLE001 - tracing is an aid, never a failure
            context.log.warning(f"No trace for {group_key}: {exc}")
            return None

    return trace


def retry_candidates(
    lakehouse: LakehouseResource, last_run_at: str | None
) -> list[tuple]:
    """(event_id, event_time) of the enriched rows to explain again: failed, with runs
    left. Every such row was written by the last run that completed (each run rewrites the
    rows it tries), so only rows written since it started are read, and Delta skips the
    files of older runs by their ``enriched_at`` statistics. Without that time (a first run
    since retries exist) the last RETRY_FALLBACK is read."""
    from pyspark.sql import functions as F

    from anomaly_assets.enrichment.statuses import RETRYABLE

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

    from anomaly_assets.core.pruning import days_predicate

    gold = lakehouse.read("gold_anomaly_predictions")
    return gold.filter(
        days_predicate("event_time", {t.date() for _, t in keys})
    ).filter(F.col("event_id").isin([k for k, _ in keys]) & F.col("is_anomaly"))


def previous_attempts(lakehouse: LakehouseResource, anomalies) -> dict[str, dict]:
    """event_id -> its enriched row's failed_runs and attempt_history, for the
    ``anomalies`` (pandas) about to be enriched."""
    from pyspark.sql import functions as F

    from anomaly_assets.core.pruning import days_predicate

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
    from anomaly_assets.core import delta_sql
    from anomaly_assets.core.pruning import event_spans, spans_predicate

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
