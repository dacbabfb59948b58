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
    Config,
    MetadataValue,
    Output,
    multi_asset,
)
from pydantic import Field

from anomaly_assets.core import cursors, spark_actions
from anomaly_assets.core.incremental import nothing_new
from anomaly_assets.core.lineage import column_lineage
from anomaly_assets.enrichment import telemetry
from anomaly_assets.enrichment.prompt_registry import (
    PRODUCTION,
    PROMPT_NAME,
    registered_prompt,
)
from anomaly_assets.enrichment.resource import LLMResource, for_stream
from anomaly_assets.enrichment.tables import (
    CACHE_SCHEMA,
    ENRICHED_SCHEMA,
    drift_by_batch,
    drop_revoked,
    gold_rows,
    load_anomalies,
    previous_attempts,
    retry_candidates,
    sent_settings,
)
from anomaly_assets.enrichment.tracing import call_tracer, flush_traces
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import MlflowResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream


def lineage(stream: Stream) -> dict:
    """Columns carried from gold_anomaly_predictions (status is renamed anomaly_status)."""
    return column_lineage(
        stream.key("gold_anomaly_predictions"),
        ["event_id", "batch_id", "user_id", "event_type", "event_time"]
        + ["anomaly_score", "severity_percentile", "top_features"],
        {"anomaly_status": ["status"]},
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

    def settings(self, attack=None):
        """The EnrichmentSettings these settings give (recorded with each run), with the
        stream's ATT&CK mapping overrides ``attack``."""
        # imports pandas: kept out of the definitions' load
        from anomaly_assets.enrichment.enrich import EnrichmentSettings

        return EnrichmentSettings(
            self.mode,
            self.max_groups,
            self.examples_per_group,
            set(self.redact_columns),
            self.max_string_chars,
            self.segment_column,
            {t: list(ids) for t, ids in (attack or {}).items()},
        )


CONSUMER = "gold_events_enriched"
#: How far back the first run since retries exist looks for failed rows.
OUTPUTS = ("gold_events_enriched", "llm_explanation_cache")


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
    # imports pandas: kept out of the definitions' load
    from anomaly_assets.enrichment.enrich import cache_from_rows, enrich, with_attempts

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
    changes, revoked, flagged = _to_explain(lakehouse, pending.changes, retry)
    try:
        anomalies = load_anomalies(flagged, lakehouse.read("silver_events"))
        batches = sorted(set(anomalies["batch_id"]))
        retried = int(anomalies["event_id"].isin({k[0] for k in retry}).sum())
        if retried:
            context.log.info(
                f"Explaining again {retried:,} anomalies that earlier runs could not explain"
            )
        previous = previous_attempts(lakehouse, anomalies)
        cache = cache_from_rows(
            _fresh_cache_rows(lakehouse, explainer, prompt, config.cache_ttl_hours)
        )
        settings = config.settings(stream.attack)
        outcome = enrich(
            anomalies,
            explainer,
            prompt,
            settings,
            drift=drift_by_batch(lakehouse.read("gold_batch_drift"), batches),
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
        meta = _run_metadata(settings, batches, through, explainer, prompt, stats)
        step_seconds = time.perf_counter() - t0
        rows = with_attempts(outcome.rows, previous, context.run_id, config.max_runs)
        rows = [{**r, "step_seconds": step_seconds} for r in rows]
        meta["retried"] = retried
        meta["will_retry"] = sum(r["will_retry"] for r in rows)
        yield Output(
            spark.createDataFrame(rows, ENRICHED_SCHEMA),
            "gold_events_enriched",
            metadata={
                **meta,
                "step_seconds": round(step_seconds, 2),
                **lineage(stream),
            },
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
    finally:  # a failed call or write leaves nothing cached in the shared session
        for persisted in (flagged, changes):
            if persisted is not None:
                persisted.unpersist()
    lakehouse.save_cursor(
        CONSUMER,
        "gold_anomaly_predictions",
        through,
        {"last_run_at": started.isoformat()},
    )


def _to_explain(lakehouse, changes, retry):
    """(gold's changes, the re-scored rows that are no longer anomalies, the anomalies to
    explain: the changes' and those due a retry). ``changes`` is persisted when given,
    the anomalies always."""
    revoked = flagged = None
    if changes is not None:
        changes = cursors.latest_per_key(changes, ["event_id"]).persist()
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
    return changes, revoked, flagged.persist()


def _fresh_cache_rows(lakehouse, explainer, prompt, ttl_hours: float) -> list:
    """Cached explanations this run may reuse: same provider, model and prompt version,
    younger than the TTL. Entries written before keys held the provider and the evidence
    are never reused."""
    table = lakehouse.read("llm_explanation_cache")
    if table is None or "cache_key" not in table.columns:
        return []
    cutoff = datetime.now(UTC) - timedelta(hours=ttl_hours)
    return table.filter(
        (table.provider == explainer.provider)
        & (table.model == explainer.model)
        & (table.prompt_version == prompt.key)
        & (table.created_at >= cutoff)
    ).collect()


def _run_metadata(settings, batches, through, explainer, prompt, stats) -> dict:
    return {
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
