"""ai_enrichment_eval_metrics: one row per enriched batch, and an MLflow evaluation run each.

Incremental like the layers before it: batches of gold_events_enriched without a row yet are
evaluated, MERGEd insert-only on (batch_id, evaluation_id), so re-evaluating changes nothing.
Each row's MLflow run has the traces of the batch's calls linked, so the MLflow UI shows
a batch's calls beside its figures. While the prompt's ``candidate`` alias points at
another version than ``production``, each new batch is also explained with it (shadow) and
evaluated as a row of its own. With ``compare_prompts`` set (see ``prompt_comparison_job``)
it instead explains the latest batch's anomalies once per prompt and writes one comparison
row per prompt.
"""

import io
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from pydantic import Field

from anomaly_assets import settings
from anomaly_assets.core import priority, spark_actions
from anomaly_assets.enrichment import telemetry
from anomaly_assets.enrichment.prompt_registry import (
    CANDIDATE,
    PRODUCTION,
    PromptRegistry,
    resolve,
)
from anomaly_assets.enrichment.resource import LLMResource, for_stream
from anomaly_assets.enrichment.tables import (
    drift_by_batch,
    enriched_rows_frame,
    load_anomalies,
    settings_sent_last,
)
from anomaly_assets.enrichment.tracing import call_tracer, flush_traces
from anomaly_assets.evaluation.judges import GRADED, JudgeFigures, judge_traces
from anomaly_assets.model.labels import load_labels
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.mlflow import EVAL_EXPERIMENT, MlflowResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

#: What an evaluation row measures: the enrichment's own answers, a shadow prompt's, or a
#: comparison's (prompt_comparison_job).
SHADOW, COMPARISON = "shadow", "comparison"
CONSUMER = "ai_enrichment_eval_metrics"
#: Evaluations drawn in the history chart (the newest ones).
HISTORY_POINTS = 200
#: Columns of the table, in order, with their Spark types.
EVAL_COLUMNS = (
    ("batch_id", "string"),
    ("evaluation_id", "string"),
    ("is_comparison", "boolean"),
    ("evaluated_at", "timestamp"),
    ("dagster_run_id", "string"),
    ("mlflow_run_id", "string"),
    ("provider", "string"),
    ("model", "string"),
    ("prompt_version", "string"),
    ("explainer", "string"),
    ("step_seconds", "double"),
    ("rows_enriched", "bigint"),
    ("status_ok", "bigint"),
    ("status_invalid", "bigint"),
    ("status_ungrounded", "bigint"),
    ("status_error", "bigint"),
    ("status_skipped_budget", "bigint"),
    ("status_cached", "bigint"),
    ("status_endpoint_unreachable", "bigint"),
    ("validity_pct", "double"),
    ("confidence_avg", "double"),
    ("confidence_min", "double"),
    ("confidence_max", "double"),
    ("risk_low", "bigint"),
    ("risk_medium", "bigint"),
    ("risk_high", "bigint"),
    ("risk_critical", "bigint"),
    ("groundedness_pct", "double"),
    ("calls", "bigint"),
    ("cache_hits", "bigint"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("estimated_cost_usd", "double"),
    ("cost_per_anomaly_usd", "double"),
    ("price_known", "boolean"),
    ("latency_p50_ms", "double"),
    ("latency_p95_ms", "double"),
    ("retries", "bigint"),
    ("labelled_rows", "bigint"),
    ("risk_agreement_pct", "double"),
    ("risk_within_one_pct", "double"),
    ("flagged_precision", "double"),
    ("flagged_recall", "double"),
    ("prompt_name", "string"),
    ("prompt_role", "string"),
    ("traces", "bigint"),
    ("judge_model", "string"),
    ("judged_calls", "bigint"),
    ("evidence_pass_pct", "double"),
    ("judge_faithful_pct", "double"),
    ("judge_actionable_pct", "double"),
    ("judge_agreement_pct", "double"),
    ("judge_errors", "bigint"),
)
EVAL_SCHEMA = ", ".join(f"{n} {t}" for n, t in EVAL_COLUMNS)
#: Panels of the history chart: (title, metrics drawn in it).
HISTORY_PANELS = (
    ("validity and grounded share, %", ("validity_pct", "groundedness_pct")),
    ("call latency, ms", ("latency_p50_ms", "latency_p95_ms")),
    ("cost per anomaly, USD", ("cost_per_anomaly_usd",)),
    ("confidence", ("confidence_avg",)),
)
#: Most traces linked to a run in one request (MLflow's limit).
LINK_CHUNK = 100


class EvalConfig(Config):
    labels_path: str = Field(
        default=str(settings.LOCAL_DIR / "labels.csv"),
        description="Generator ground truth (CSV): enables risk agreement, precision, recall.",
    )
    artifact_user_ids: bool = Field(
        default=False,
        description="Keep user_id in the enriched-rows CSV logged to MLflow (left out by "
        "default: MLflow is often readable by more people than the lakehouse).",
    )
    compare_prompts: list[str] = Field(
        default_factory=list,
        description="Prompts to compare on the latest enriched batch (one row each): "
        "registry references (name@alias, name/version) or files in enrichment/prompts/.",
    )
    judges: bool = Field(
        default=True,
        description="Grade each batch's calls with mlflow.genai.evaluate: LLM judges of "
        "faithfulness and actionability on the configured endpoint, and the evidence "
        "checks as a code scorer (the only one with the offline explainer).",
    )
    judge_max_calls: int = Field(
        default=20, ge=0, description="Calls graded per batch (the judges cost calls)."
    )
    judge_concurrency: int = Field(
        default=4, ge=1, description="Judge requests in flight at once."
    )
    judge_timeout_s: float = Field(
        default=60.0,
        ge=1.0,
        description="Longest a judge may take on one call; a slower or failing judge "
        "leaves that grade empty (counted in judge_errors).",
    )
    shadow_alias: str = Field(
        default=CANDIDATE,
        description="While this alias of the enrichment's prompt points at a version "
        "other than production's, each evaluated batch is also explained with it: its "
        "figures become evaluation rows (prompt_role shadow), its answers go nowhere else.",
    )


def history_chart(history) -> bytes:
    """PNG over batches: validity and grounded share, latency p50 / p95, cost per anomaly
    and confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(HISTORY_PANELS), 1, figsize=(7, 9), sharex=True)
    xs = list(range(1, len(history) + 1))
    for ax, (title, metrics) in zip(axes, HISTORY_PANELS):
        for metric in metrics:
            ys = [h.get(metric) for h in history]
            ax.plot(
                xs,
                [float("nan") if y is None else y for y in ys],
                marker="o",
                label=metric,
            )
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("evaluated batch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("AI enrichment evaluation history")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def log_evaluation(
    mlflow_settings: MlflowResource,
    row: dict,
    rows_csv: str,
    chart_png: bytes,
    dagster_run_id: str,
    trace_ids: list[str],
    log,
    stream: str = "",
) -> str:
    """One MLflow run in the eval experiment, FINISHED on success, FAILED otherwise, with
    the traces of the batch's calls linked to it."""
    import tempfile
    from pathlib import Path

    import mlflow

    # ensure_experiment also points the mlflow module at this project's store.
    experiment_id = mlflow_settings.ensure_experiment(EVAL_EXPERIMENT)
    tags = {
        "batch_id": row["batch_id"],
        "dagster_run_id": dagster_run_id,
        "evaluation_id": row["evaluation_id"],
        "is_comparison": str(row["is_comparison"]),
        "prompt_role": row["prompt_role"],
        "anomaly_assets.stream": stream or "default",
    }
    with (
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"eval {row['evaluation_id']}",
            tags=tags,
        ) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.log_params(
            {
                "prompt_name": row["prompt_name"],
                "prompt_version": row["prompt_version"],
                "model": row["model"],
                "explainer": row["explainer"],
                "provider": row["provider"],
            }
        )
        numeric = {
            k: float(v)
            for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        mlflow.log_metrics(numeric)
        (Path(tmp) / "enriched_rows.csv").write_text(rows_csv)
        (Path(tmp) / "metric_history.png").write_bytes(chart_png)
        mlflow.log_artifact(str(Path(tmp) / "enriched_rows.csv"))
        mlflow.log_artifact(str(Path(tmp) / "metric_history.png"))
    try:
        for i in range(0, len(trace_ids), LINK_CHUNK):
            mlflow_settings.client().link_traces_to_run(
                trace_ids[i : i + LINK_CHUNK], run.info.run_id
            )
    except Exception as exc:  # noqa: BLE001 - the figures are logged; links are an aid
        log(f"The batch's traces could not be linked to run {run.info.run_id}: {exc}")
    return run.info.run_id


def judge_batch(mlflow_settings, run_id: str, llm, config, context) -> dict:
    """Grade the calls traced in MLflow run ``run_id`` (at most ``judge_max_calls`` that
    returned an explanation) in that run; the figures for the evaluation row. Grades are
    an aid: when judging fails as a whole, the row lands without them (``judged_calls`` 0,
    ``judge_errors`` the calls left ungraded) and the log says why."""
    from dataclasses import asdict

    import mlflow

    traces = None
    with llm.judge_endpoint(config.judge_concurrency) as model:
        try:
            experiment_id = mlflow_settings.ensure_experiment(EVAL_EXPERIMENT)
            # resuming a run needs its experiment active (training sets another one)
            mlflow.set_experiment(experiment_id=experiment_id)
            traces = mlflow.search_traces(locations=[experiment_id], run_id=run_id)
            if not traces.empty:
                status = traces["tags"].map(lambda tags: (tags or {}).get("status"))
                traces = traces[status.isin(GRADED)].head(config.judge_max_calls)
            if model is None:
                context.log.info(
                    "LLM judges skipped: the offline explainer has no model to judge "
                    "with; only the evidence checks graded the calls."
                )
            with mlflow.start_run(run_id=run_id):
                figures = judge_traces(traces, model, config.judge_timeout_s)
                mlflow.log_metrics(
                    {k: float(v) for k, v in asdict(figures).items() if v is not None}
                )
        except Exception as exc:  # noqa: BLE001 - grades are an aid; the row must land
            context.log.warning(f"Judging failed, no grades for this batch: {exc}")
            ungraded = 0 if traces is None else len(traces)
            figures = JudgeFigures(0, None, None, None, None, ungraded)
    return {**asdict(figures), "judge_model": model or ""}


#: Columns of the MLflow rows artifact that identify a person.
PERSONAL_COLUMNS = ("user_id",)


def artifact_csv(rows, user_ids: bool = False) -> str:
    """The batch's enriched rows as CSV for MLflow, without user ids unless asked."""
    drop = [] if user_ids else [c for c in PERSONAL_COLUMNS if c in rows.columns]
    return rows.drop(columns=drop).to_csv(index=False)


def _evaluation_rows(
    context,
    config,
    evaluations,
    lakehouse,
    mlflow_settings,
    llm,
    labels,
    silver_ids,
    stream: str = "",
) -> list[dict]:
    """One evaluation row per entry of ``evaluations`` (evaluation id -> (batch, rows,
    role)), each logged as an MLflow run with its calls' traces linked."""
    # imports pandas: kept out of the definitions' load
    from anomaly_assets.evaluation.metrics import evaluate

    table = lakehouse.read("ai_enrichment_eval_metrics")
    history = (
        []
        if table is None
        else [
            r.asDict()
            for r in reversed(
                table.filter("NOT is_comparison")
                .orderBy(table.evaluated_at.desc())
                .limit(HISTORY_POINTS)
                .collect()
            )
        ]
    )
    out = []
    for evaluation_id, (batch, rows, role) in evaluations.items():
        metrics = evaluate(rows, llm.price_table(), labels, silver_ids.get(batch))
        first = rows.iloc[0]
        traces = sorted(set(rows["trace_id"].dropna())) if "trace_id" in rows else []
        row = {
            "batch_id": batch,
            "evaluation_id": evaluation_id,
            "is_comparison": role != PRODUCTION,
            "prompt_role": role,
            "evaluated_at": datetime.now(UTC),
            "dagster_run_id": context.run_id,
            "provider": first["provider"],
            "model": first["model"],
            "prompt_name": first.get("prompt_name"),
            "prompt_version": first["prompt_version"],
            "explainer": f"{first['provider']}/{first['model']}",
            "step_seconds": float(rows["step_seconds"].max()),
            "traces": len(traces),
            **metrics,
        }
        if role == PRODUCTION:
            history.append(row)
        chart = history_chart(history if role == PRODUCTION else [*history, row])
        row["mlflow_run_id"] = log_evaluation(
            mlflow_settings,
            row,
            artifact_csv(rows, config.artifact_user_ids),
            chart,
            context.run_id,
            traces,
            context.log.warning,
            stream,
        )
        if config.judges:
            row.update(
                judge_batch(mlflow_settings, row["mlflow_run_id"], llm, config, context)
            )
        context.log.info(
            f"Evaluated {evaluation_id} ({role}): validity {row['validity_pct']:.1f}%, "
            f"groundedness {row['groundedness_pct']:.1f}%, "
            f"cost ${row['estimated_cost_usd']:.4f} (MLflow run "
            f"{row['mlflow_run_id']}, {len(traces)} traces)"
        )
        out.append(row)
    return out


def build_ai_enrichment_eval_metrics(stream: Stream = DEFAULT_STREAM):
    """``stream``'s ai_enrichment_eval_metrics."""

    @asset(
        key=stream.key("ai_enrichment_eval_metrics"),
        ins={
            "gold_events_enriched": AssetIn(key=stream.key("gold_events_enriched")),
            "silver_events": AssetIn(key=stream.key("silver_events")),
        },
        description="One row per enriched batch: statuses, validity, confidence, risk "
        "levels, groundedness, calls, cache hits, tokens, estimated cost, latency, "
        "retries, explainer, prompt name and version, runtime and (with labels) risk "
        "agreement and flagged precision / recall; each also an MLflow run in the "
        "ai_enrichment_eval experiment, with the batch's call traces linked. A shadow "
        "prompt's batches add rows of their own.",
        group_name=stream.group("ai"),
        kinds={"spark", "delta", "mlflow"},
        metadata={
            "delta/write_mode": "merge_insert",
            "delta/merge_keys": ["batch_id", "evaluation_id"],
        },
        tags={"layer": "ai"},
        owners=["team:ml-platform"],
        op_tags=priority.EVALUATION,
        pool=stream.pool("ai_enrichment_eval_metrics"),
    )
    def ai_enrichment_eval_metrics(
        context: AssetExecutionContext,
        config: stream.config(EvalConfig, "ai_enrichment_eval_metrics"),
        gold_events_enriched,
        silver_events,
        lakehouse: LakehouseResource,
        mlflow_settings: MlflowResource,
        llm: LLMResource,
    ):
        with spark_actions.step(context):
            yield from evaluate_batches(
                context,
                config,
                gold_events_enriched,
                silver_events,
                stream.lakehouse(lakehouse),
                mlflow_settings,
                for_stream(stream, llm),
                stream,
            )

    return ai_enrichment_eval_metrics


def evaluate_batches(
    context,
    config: EvalConfig,
    gold_events_enriched,
    silver_events,
    lakehouse,
    mlflow_settings,
    llm,
    stream: Stream,
):
    """Evaluate the newly enriched batches (and their shadow), or compare prompts."""
    labels = load_labels(config.labels_path)
    spark = lakehouse.spark_session
    pending = None

    def read_again() -> _Again:  # read once, and only if a batch is explained again
        return _Again.read(context, llm, lakehouse, silver_events, stream)

    if config.compare_prompts:
        evaluations = _comparisons(
            context,
            config,
            gold_events_enriched,
            read_again,
            llm,
            mlflow_settings,
        )
    else:
        pending = lakehouse.pending_changes(CONSUMER, "gold_events_enriched")
        batches = _new_batches(lakehouse, pending.changes)
        frame = gold_events_enriched.filter(gold_events_enriched.batch_id.isin(batches))
        pdf = frame.toPandas()
        evaluations = {
            f"batch:{b}": (b, rows, PRODUCTION) for b, rows in pdf.groupby("batch_id")
        }
        evaluations.update(
            _shadows(
                context,
                config,
                pdf,
                read_again,
                llm,
                mlflow_settings,
            )
        )
    batches = sorted({b for b, _, _ in evaluations.values()})
    silver_ids = {}
    if labels and batches:
        for r in (
            silver_events.filter(silver_events.batch_id.isin(batches))
            .select("batch_id", "event_id")
            .collect()
        ):
            silver_ids.setdefault(r["batch_id"], set()).add(r["event_id"])
    rows = _evaluation_rows(
        context,
        config,
        evaluations,
        lakehouse,
        mlflow_settings,
        llm,
        labels,
        silver_ids,
        stream.name,
    )
    df = spark.createDataFrame(
        [tuple(r.get(n) for n, _ in EVAL_COLUMNS) for r in rows], EVAL_SCHEMA
    )
    yield Output(
        df,
        metadata={
            "evaluations": MetadataValue.json([r["evaluation_id"] for r in rows]),
            "mlflow_experiment": EVAL_EXPERIMENT,
            "mlflow_run_ids": MetadataValue.json([r["mlflow_run_id"] for r in rows]),
            "summary": MetadataValue.md(_summary_table(rows)),
        },
    )
    if pending is not None:
        lakehouse.save_cursor(CONSUMER, "gold_events_enriched", pending.through)
    telemetry.flush()  # the shadow's and comparisons' calls


def _new_batches(lakehouse: LakehouseResource, changes) -> list[str]:
    """Batches with enriched rows among ``changes`` and no evaluation yet."""
    if changes is None:
        return []
    touched = {r[0] for r in changes.select("batch_id").distinct().collect()}
    existing = lakehouse.read("ai_enrichment_eval_metrics")
    if existing is not None and touched:
        done = existing.filter(
            existing.batch_id.isin(sorted(touched)) & ~existing.is_comparison
        )
        touched -= {r[0] for r in done.select("batch_id").distinct().collect()}
    return sorted(touched)


def _summary_table(rows: list[dict]) -> str:
    if not rows:
        return "No batch to evaluate."
    head = "| evaluation | prompt | validity % | grounded % | confidence | cost USD | calls |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        conf = "-" if r["confidence_avg"] is None else f"{r['confidence_avg']:.2f}"
        lines.append(
            f"| {r['evaluation_id']} | {r['prompt_version']} | "
            f"{r['validity_pct']:.1f} | {r['groundedness_pct']:.1f} | {conf} | "
            f"{r['estimated_cost_usd']:.4f} | {r['calls']} |"
        )
    return "\n".join(lines)


@dataclass
class _Again:
    """What explaining batches again needs, read once per run: the explainer, the
    settings the enrichment last explained with (redaction included), and each batch's
    anomalies and drift, read the first time a prompt asks for them."""

    explainer: object
    settings: object
    lakehouse: LakehouseResource
    silver_events: object
    loaded: dict = field(default_factory=dict)

    @classmethod
    def read(cls, context, llm, lakehouse, silver_events, stream) -> "_Again":
        settings = settings_sent_last(context, stream.key("gold_events_enriched"))
        return cls(llm.explainer(), settings, lakehouse, silver_events)

    def batch(self, batch: str):
        """(anomalies as pandas, drifted features) of ``batch``."""
        if batch not in self.loaded:
            gold = self.lakehouse.read("gold_anomaly_predictions")
            anomalies = load_anomalies(
                gold.filter(gold.is_anomaly & (gold.batch_id == batch)),
                self.silver_events,
            )
            drift = drift_by_batch(self.lakehouse.read("gold_batch_drift"), [batch])
            self.loaded[batch] = (anomalies, drift)
        return self.loaded[batch]


def _explained_again(context, again, batch, prompt, llm, mlflow_settings, role):
    """The batch's anomalies explained with ``prompt`` as the enrichment explains them (its
    last settings, the batch's drift), without the cache, each call traced; the rows for
    its evaluation only."""
    # imports pandas: kept out of the definitions' load
    from anomaly_assets.enrichment.enrich import enrich

    anomalies, drift = again.batch(batch)
    t0 = time.perf_counter()
    outcome = enrich(
        anomalies,
        again.explainer,
        prompt,
        again.settings,
        drift=drift,
        max_concurrency=llm.max_concurrency,
        run_id=context.run_id,
        log=context.log.info,
        trace=call_tracer(
            context,
            mlflow_settings,
            again.explainer,
            prompt,
            llm.price_table(),
            [batch],
            role,
        ),
    )
    flush_traces()
    return enriched_rows_frame(outcome.rows, time.perf_counter() - t0)


def _comparisons(context, config, enriched, read_again, llm, mlflow_settings):
    """The latest enriched batch explained again with each prompt of ``compare_prompts``."""
    latest = enriched.orderBy(enriched.enriched_at.desc()).select("batch_id").first()
    if latest is None:
        return {}
    batch, again = latest[0], read_again()
    registry = PromptRegistry(mlflow_settings.tracking_uri)
    out = {}
    for reference in config.compare_prompts:
        prompt = resolve(reference, registry)
        rows = _explained_again(
            context, again, batch, prompt, llm, mlflow_settings, COMPARISON
        )
        if rows.empty:
            context.log.info(f"Nothing to compare with {prompt.label} in batch {batch}")
            continue
        model = rows["model"].iloc[0]
        out[f"compare:{batch}:{prompt.label}:{model}:{context.run_id[:8]}"] = (
            batch,
            rows,
            COMPARISON,
        )
    return out


def _shadows(context, config, enriched, read_again, llm, mlflow_settings):
    """The new batches explained again with the shadow prompt, if one is set: the
    candidate alias of the prompt the batches were explained with (``read_again`` reads
    what that needs, once, when a batch needs it)."""
    if enriched.empty or "prompt_name" not in enriched:
        return {}
    out, again = {}, None
    for name in sorted(set(enriched["prompt_name"].dropna())):
        mine = enriched[enriched["prompt_name"] == name]
        try:
            candidate = PromptRegistry(mlflow_settings.tracking_uri, name).load(
                config.shadow_alias
            )
        except Exception as exc:  # noqa: BLE001 - the shadow never costs the evaluation
            context.log.warning(f"No shadow run: the registry could not be read: {exc}")
            continue
        if candidate is None:
            continue
        batches = sorted(
            set(mine.loc[mine["prompt_version"] != candidate.version, "batch_id"])
        )
        if batches:
            context.log.info(
                f"Shadow: explaining {len(batches)} batch(es) again with "
                f"{candidate.label} ({config.shadow_alias})"
            )
        for batch in batches:
            try:
                again = again or read_again()
                rows = _explained_again(
                    context, again, batch, candidate, llm, mlflow_settings, SHADOW
                )
            except Exception as exc:  # noqa: BLE001
                context.log.warning(f"Shadow run of batch {batch} failed: {exc}")
                continue
            if len(rows):
                out[f"shadow:{batch}:{candidate.label}"] = (batch, rows, SHADOW)
    return out


ai_enrichment_eval_metrics = build_ai_enrichment_eval_metrics()
