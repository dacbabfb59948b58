"""MLflow traces of the LLM calls: one trace per explained group, in the evaluation
experiment, browsable in the MLflow UI's Traces tab.

A trace holds what was sent (the prompt and the group's data, already redacted), the answer
(masked again), tokens, latency, cost, status, attempts and error, tagged with the Dagster
run, the group and the batches. It is written after the call from the call's own record,
in the step's main thread, with the call's real start and end: the worker threads only
call the endpoint. The evaluation links the traces of a batch's rows to its MLflow run.
"""

from anomaly_assets.enrichment.explainers import CallResult
from anomaly_assets.enrichment.pricing import call_cost
from anomaly_assets.enrichment.prompt_registry import PRODUCTION
from anomaly_assets.enrichment.redaction import mask_text
from anomaly_assets.resources.mlflow import EVAL_EXPERIMENT

#: Row statuses whose call the trace marks as failed.
FAILED = ("error", "invalid", "ungrounded")


def log_call_trace(
    result: CallResult,
    *,
    experiment_id: str,
    explainer,
    prompt,
    group_key: str,
    prices: dict,
    tags: dict[str, str],
) -> str | None:
    """Write the trace of one call; returns its trace id (None when MLflow made none)."""
    import mlflow
    from mlflow.entities import SpanType
    from mlflow.entities.span import NO_OP_SPAN_TRACE_ID
    from mlflow.tracing.constant import SpanAttributeKey

    cost_in, cost_out = call_cost(
        prices, explainer.model, result.prompt_tokens, result.completion_tokens
    )
    # the data was redacted before it was sent; answers asked again about are masked here
    messages = [
        {**m, "content": mask_text(m["content"])} if m.get("role") == "assistant" else m
        for m in result.messages or []
    ]
    span = mlflow.start_span_no_context(
        name=f"explain {group_key}"[:200],
        span_type=SpanType.CHAT_MODEL,
        inputs={"messages": messages},
        attributes={
            "anomaly_assets.status": result.status,
            "anomaly_assets.attempts": result.attempts,
            "anomaly_assets.group_key": group_key,
            "gen_ai.provider.name": explainer.provider,
            "gen_ai.request.model": explainer.model,
            SpanAttributeKey.MODEL: explainer.model,
            SpanAttributeKey.CHAT_USAGE: {
                "input_tokens": result.prompt_tokens,
                "output_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
            SpanAttributeKey.LLM_COST: {
                "input_cost": cost_in,
                "output_cost": cost_out,
                "total_cost": cost_in + cost_out,
            },
        },
        tags={
            **tags,
            "group_key": group_key[:250],
            "status": result.status,
            "prompt_name": prompt.name,
            "prompt_version": str(prompt.version),
        },
        experiment_id=experiment_id,
        start_time_ns=result.started_ns or None,
    )
    answer = result.raw_response
    span.set_outputs(
        {
            "status": result.status,
            "answer": mask_text(answer) if answer else None,
            "error": result.error,
        }
    )
    if result.status in FAILED:
        span.set_status("ERROR")
    end = (
        result.started_ns + int(result.latency_ms * 1e6) if result.started_ns else None
    )
    span.end(end_time_ns=end)
    # MLflow hands out a placeholder span when tracing is off or the span failed to start
    return None if span.trace_id == NO_OP_SPAN_TRACE_ID else span.trace_id


def flush_traces() -> None:
    """Write the traces MLflow still queues: the evaluation links them to its run."""
    import mlflow

    mlflow.flush_trace_async_logging()


def call_tracer(
    context, mlflow_settings, explainer, prompt, prices, batches, role=PRODUCTION
):
    """``trace(result, group_key)`` for ``enrich``: an MLflow trace per call, in the
    evaluation experiment. A trace that cannot be written costs its id, not the row."""
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
