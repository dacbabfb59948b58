"""ai_enrichment_eval_metrics: one row per enriched batch, and an MLflow evaluation run each.

Incremental like the layers before it: batches of gold_events_enriched without a row yet are
evaluated, MERGEd insert-only on (batch_id, evaluation_id), so re-evaluating changes nothing.
With ``compare_prompts`` set (see ``prompt_comparison_job``) it instead explains the latest
batch's anomalies once per prompt and writes one comparison row per prompt.
"""

import io
import time
from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetIn, Config, MetadataValue, Output, asset
from pydantic import Field

from anomaly_assets import settings
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.llm import LLMResource
from anomaly_assets.resources.mlflow import MlflowResource

EVAL_EXPERIMENT = "ai_enrichment_eval"
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
)
EVAL_SCHEMA = ", ".join(f"{n} {t}" for n, t in EVAL_COLUMNS)
HISTORY_METRICS = ("validity_pct", "confidence_avg", "cost_per_anomaly_usd")


class EvalConfig(Config):
    labels_path: str = Field(
        default=str(settings.LOCAL_DIR / "labels.csv"),
        description="Generator ground truth (CSV): enables risk agreement, precision, recall.",
    )
    prices: dict[str, list[float]] = Field(
        default_factory=dict,
        description="USD per million tokens [input, output] by model; adds to the defaults.",
    )
    artifact_user_ids: bool = Field(
        default=False,
        description="Keep user_id in the enriched-rows CSV logged to MLflow (left out by "
        "default: MLflow is often readable by more people than the lakehouse).",
    )
    compare_prompts: list[str] = Field(
        default_factory=list,
        description="Prompt names to compare on the latest enriched batch (one row each).",
    )


def history_chart(history) -> bytes:
    """PNG of validity, confidence and cost per anomaly over batches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(HISTORY_METRICS), 1, figsize=(7, 7), sharex=True)
    xs = list(range(1, len(history) + 1))
    for ax, metric in zip(axes, HISTORY_METRICS):
        ax.plot(xs, [h.get(metric) or 0.0 for h in history], marker="o")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("evaluated batch")
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
) -> str:
    """One MLflow run in the eval experiment; FINISHED on success, FAILED otherwise."""
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
        return run.info.run_id


#: Columns of the MLflow rows artifact that identify a person.
PERSONAL_COLUMNS = ("user_id",)


def artifact_csv(rows, user_ids: bool = False) -> str:
    """The batch's enriched rows as CSV for MLflow, without user ids unless asked."""
    drop = [] if user_ids else [c for c in PERSONAL_COLUMNS if c in rows.columns]
    return rows.drop(columns=drop).to_csv(index=False)


def _evaluation_rows(
    context,
    config,
    batches_rows,
    lakehouse,
    mlflow_settings,
    labels,
    silver_ids,
    comparison: bool,
) -> list[dict]:
    from anomaly_assets.lib.evaluation import evaluate

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
    prices = {k: tuple(v) for k, v in config.prices.items()}
    out = []
    for evaluation_id, (batch, rows) in batches_rows.items():
        metrics = evaluate(rows, prices, labels, silver_ids.get(batch))
        first = rows.iloc[0]
        row = {
            "batch_id": batch,
            "evaluation_id": evaluation_id,
            "is_comparison": comparison,
            "evaluated_at": datetime.now(UTC),
            "dagster_run_id": context.run_id,
            "provider": first["provider"],
            "model": first["model"],
            "prompt_version": first["prompt_version"],
            "explainer": f"{first['provider']}/{first['model']}",
            "step_seconds": float(rows["step_seconds"].max()),
            **metrics,
        }
        if not comparison:
            history.append(row)
        chart = history_chart(history if not comparison else [*history, row])
        row["mlflow_run_id"] = log_evaluation(
            mlflow_settings,
            row,
            artifact_csv(rows, config.artifact_user_ids),
            chart,
            context.run_id,
        )
        context.log.info(
            f"Evaluated {evaluation_id}: validity {row['validity_pct']:.1f}%, "
            f"groundedness {row['groundedness_pct']:.1f}%, "
            f"cost ${row['estimated_cost_usd']:.4f} (MLflow run "
            f"{row['mlflow_run_id']})"
        )
        out.append(row)
    return out


@asset(
    ins={"gold_events_enriched": AssetIn(), "silver_events": AssetIn()},
    description="One row per enriched batch: statuses, validity, confidence, risk levels, "
    "groundedness, calls, cache hits, tokens, estimated cost, latency, retries, explainer, "
    "runtime and (with labels) risk agreement and flagged precision / recall; each also an "
    "MLflow run in the ai_enrichment_eval experiment.",
    group_name="ai",
    kinds={"spark", "delta", "mlflow"},
    metadata={
        "delta/write_mode": "merge_insert",
        "delta/merge_keys": ["batch_id", "evaluation_id"],
    },
    tags={"layer": "ai"},
    owners=["team:ml-platform"],
    pool="anomaly_assets/ai_enrichment_eval_metrics",
)
def ai_enrichment_eval_metrics(
    context: AssetExecutionContext,
    config: EvalConfig,
    gold_events_enriched,
    silver_events,
    lakehouse: LakehouseResource,
    mlflow_settings: MlflowResource,
    llm: LLMResource,
):
    from anomaly_assets.assets.model import load_labels

    labels = load_labels(config.labels_path)
    spark = lakehouse.spark_session
    if config.compare_prompts:
        batches_rows = _comparison_rows(
            context, config, gold_events_enriched, silver_events, lakehouse, llm
        )
        batches = sorted({b for b, _ in batches_rows.values()})
    else:
        pending = lakehouse.pending_changes(CONSUMER, "gold_events_enriched")
        batches = _new_batches(lakehouse, pending.changes)
        frame = gold_events_enriched.filter(gold_events_enriched.batch_id.isin(batches))
        pdf = frame.toPandas()
        batches_rows = {f"batch:{b}": (b, rows) for b, rows in pdf.groupby("batch_id")}
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
        batches_rows,
        lakehouse,
        mlflow_settings,
        labels,
        silver_ids,
        bool(config.compare_prompts),
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
    if not config.compare_prompts:
        lakehouse.save_cursor(CONSUMER, "gold_events_enriched", pending.through)


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


def _comparison_rows(context, config, enriched, silver_events, lakehouse, llm) -> dict:
    """Explain the latest enriched batch's anomalies again with each prompt, no cache."""
    from anomaly_assets.assets.enrichment import enriched_rows_frame, load_anomalies
    from anomaly_assets.llm.enrich import EnrichmentSettings, enrich
    from anomaly_assets.llm.prompts import load_prompt

    latest = enriched.orderBy(enriched.enriched_at.desc()).select("batch_id").first()
    if latest is None:
        return {}
    batch = latest[0]
    gold = lakehouse.read("gold_anomaly_predictions")
    anomalies = load_anomalies(
        gold.filter(gold.is_anomaly & (gold.batch_id == batch)), silver_events
    )
    explainer = llm.explainer()
    out = {}
    for name in config.compare_prompts:
        prompt = load_prompt(name)
        t0 = time.perf_counter()
        outcome = enrich(
            anomalies,
            explainer,
            prompt,
            EnrichmentSettings(),
            max_concurrency=llm.max_concurrency,
            run_id=context.run_id,
            log=context.log.info,
        )
        rows = enriched_rows_frame(outcome.rows, time.perf_counter() - t0)
        out[
            f"compare:{batch}:{prompt.version}:{explainer.model}:{context.run_id[:8]}"
        ] = (batch, rows)
    return out
