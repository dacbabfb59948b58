"""Evaluation of one enrichment batch: the numbers for ai_enrichment_eval_metrics and MLflow.

Plain pandas over the batch's gold_events_enriched rows. Per-call figures (tokens, latency,
retries) count each call once, however many rows share its explanation.
"""

import numpy as np
import pandas as pd

from anomaly_assets.enrichment.pricing import call_cost, price_table
from anomaly_assets.enrichment.schema import RISK_LEVELS
from anomaly_assets.enrichment.statuses import EXPLAINED, PARSED, STATUSES

#: The severity each injected anomaly type deserves, for risk-level agreement.
EXPECTED_RISK = {
    "credential_stuffing": "high",
    "impossible_travel": "high",
    "data_exfiltration": "critical",
    "high_value_purchase": "medium",
    "bot_activity": "medium",
    "account_takeover": "critical",
}


def _grounded(row) -> bool:
    factors = list(row["top_factors"]) if row["top_factors"] is not None else []
    tops = set(row["top_features"]) if row["top_features"] is not None else set()
    return bool(factors) and set(factors) <= tops


def evaluate(
    rows: pd.DataFrame,
    prices: dict[str, tuple[float, float]] | None = None,
    labels: dict[str, str] | None = None,
    batch_event_ids: set[str] | None = None,
) -> dict:
    """Metrics of one batch of enriched rows.

    ``labels`` (event_id -> anomaly type) and ``batch_event_ids`` (every silver event of the
    batch) enable risk agreement and the precision / recall of the flagged anomalies.
    """
    prices = price_table(prices)
    n = len(rows)
    status = rows["enrichment_status"].value_counts().to_dict()
    attempted = n - status.get("skipped_budget", 0)
    explained = rows[rows["enrichment_status"].isin(EXPLAINED)]
    parsed = rows[rows["enrichment_status"].isin(PARSED)]
    grounded = sum(_grounded(row) for _, row in explained.iterrows())
    calls = rows[rows["call_id"].notna()].drop_duplicates("call_id")
    model = rows["model"].iloc[0] if n else ""
    prompt_tokens = int(calls["prompt_tokens"].sum())
    completion_tokens = int(calls["completion_tokens"].sum())
    cost = sum(call_cost(prices, model, prompt_tokens, completion_tokens))
    confidence = explained["confidence"].astype(float)
    latency = calls["latency_ms"].astype(float)
    metrics = {
        "rows_enriched": n,
        **{f"status_{s}": int(status.get(s, 0)) for s in STATUSES},
        # Of the rows a call was spent on: an answer in the schema, after re-asks.
        "validity_pct": 100.0 * len(parsed) / attempted if attempted else 0.0,
        "confidence_avg": float(confidence.mean()) if len(confidence) else None,
        "confidence_min": float(confidence.min()) if len(confidence) else None,
        "confidence_max": float(confidence.max()) if len(confidence) else None,
        **{
            f"risk_{level}": int((explained["risk_level"] == level).sum())
            for level in RISK_LEVELS
        },
        # Of those: an answer that passed the evidence checks and cites only the row's own
        # top features.
        "groundedness_pct": 100.0 * grounded / len(parsed) if len(parsed) else 0.0,
        "calls": len(calls),
        "cache_hits": int(
            rows.loc[rows["enrichment_status"] == "cached", "group_key"].nunique()
        ),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "estimated_cost_usd": cost,
        "cost_per_anomaly_usd": cost / n if n else 0.0,
        "latency_p50_ms": float(np.percentile(latency, 50)) if len(latency) else None,
        "latency_p95_ms": float(np.percentile(latency, 95)) if len(latency) else None,
        "retries": int((calls["attempts"] - 1).clip(lower=0).sum()),
        "price_known": model in prices,
    }
    metrics.update(_label_metrics(rows, explained, labels, batch_event_ids))
    return metrics


def _label_metrics(rows, explained, labels, batch_event_ids) -> dict:
    empty = {
        "labelled_rows": 0,
        "risk_agreement_pct": None,
        "risk_within_one_pct": None,
        "flagged_precision": None,
        "flagged_recall": None,
    }
    if not labels:
        return empty
    kinds = explained["event_id"].map(labels)
    judged = explained[kinds.notna()]
    out = dict(empty)
    if len(judged):
        expected = kinds[kinds.notna()].map(EXPECTED_RISK)
        got = judged["risk_level"]
        rank = {level: i for i, level in enumerate(RISK_LEVELS)}
        distance = (got.map(rank) - expected.map(rank)).abs()
        out.update(
            labelled_rows=len(judged),
            risk_agreement_pct=100.0 * float((got == expected).mean()),
            risk_within_one_pct=100.0 * float((distance <= 1).mean()),
        )
    flagged = set(rows["event_id"])
    true_flagged = sum(1 for e in flagged if e in labels)
    out["flagged_precision"] = true_flagged / len(flagged) if flagged else None
    if batch_event_ids is not None:
        positives = {e for e in batch_event_ids if e in labels}
        out["flagged_recall"] = (
            (len(positives & flagged) / len(positives)) if positives else None
        )
    return out
