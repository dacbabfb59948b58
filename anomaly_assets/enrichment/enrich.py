"""Explain a batch of anomalies: group, budget, cache, probe, call, and one row per anomaly.

Plain Python over pandas so it runs and is tested without Spark or Dagster. Nothing is
dropped: every anomaly gets a row whose ``enrichment_status`` says what happened
(ok / invalid / ungrounded / error / skipped_budget / cached / endpoint_unreachable).
"""

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from pydantic import ValidationError

from anomaly_assets.enrichment.evidence import unsupported_numbers, violations
from anomaly_assets.enrichment.explainers import CallResult
from anomaly_assets.enrichment.grouping import as_list, group_anomalies, prompt_payload
from anomaly_assets.enrichment.prompts import Prompt
from anomaly_assets.enrichment.redaction import mask_text
from anomaly_assets.enrichment.schema import AnomalyExplanation
from anomaly_assets.enrichment.statuses import EXPLAINED, RETRYABLE, STATUSES
from anomaly_assets.gold.attack import techniques
from anomaly_assets.silver.features import FEATURE_FINGERPRINT

EXPLANATION_FIELDS = tuple(AnomalyExplanation.model_fields)
#: Attempts kept in a row's history: the latest ones.
HISTORY_KEPT = 10


@dataclass
class EnrichmentSettings:
    mode: str = "group"  # or "event": one call per anomaly, for small volumes
    max_groups: int = 50
    examples_per_group: int = 3
    redact_columns: set[str] = field(
        default_factory=lambda: {"user_id", "session_id", "ip_address"}
    )
    max_string_chars: int = 200
    segment_column: str = "event_type"
    #: The stream's ATT&CK mapping overrides (gold/attack.py): the techniques the prompt
    #: names for each group's threats.
    attack: dict = field(default_factory=dict)


@dataclass
class Outcome:
    rows: list[dict]
    cache_entries: list[dict]
    stats: dict


def _explanation_columns(explanation: AnomalyExplanation | None) -> dict:
    if explanation is None:
        return {name: None for name in EXPLANATION_FIELDS}
    data = explanation.model_dump()
    return {**data, "top_factors": list(data["top_factors"])}


def enrich(
    anomalies: pd.DataFrame,
    explainer,
    prompt: Prompt,
    settings: EnrichmentSettings,
    drift: dict[str, list[str]] | None = None,
    cache: dict[str, str] | None = None,
    max_concurrency: int = 4,
    run_id: str = "",
    log=lambda msg: None,
    trace=None,
) -> Outcome:
    """Explanations for ``anomalies`` (gold rows joined with their silver event fields).

    ``trace(result, group_key)``, when given, records each call (an MLflow trace) and
    returns its id, kept on the group's rows."""
    drift, cache = drift or {}, cache or {}
    groups = group_anomalies(anomalies, settings.mode, settings.segment_column)
    selected, over_budget = groups[: settings.max_groups], groups[settings.max_groups :]
    payloads = {
        g.key: prompt_payload(
            g,
            drift,
            settings.redact_columns,
            settings.examples_per_group,
            settings.max_string_chars,
            techniques(settings.attack),
        )
        for g in selected
    }
    fingerprints = {g.key: evidence_fingerprint(payloads[g.key]) for g in selected}
    keys = {
        g.key: cache_key(explainer, prompt.key, g.key, fingerprints[g.key])
        for g in selected
    }
    cached = {
        g.key: hit
        for g in selected
        if (hit := reusable(cache.get(keys[g.key]), payloads[g.key])) is not None
    }
    to_call = [g for g in selected if g.key not in cached]
    log(
        f"{len(anomalies):,} anomalies in {len(groups)} groups: {len(to_call)} to explain, "
        f"{len(cached)} cached, {len(over_budget)} over the budget of {settings.max_groups}"
    )

    results: dict[str, CallResult] = {}
    unreachable = explainer.probe() if to_call else None
    t0 = time.perf_counter()
    if unreachable:
        log(f"Endpoint probe failed, no calls made: {unreachable}")
    elif to_call:
        with ThreadPoolExecutor(max_workers=max(1, max_concurrency)) as pool:
            futures = {
                g.key: pool.submit(explainer.explain, prompt, payloads[g.key])
                for g in to_call
            }
            step = max(1, len(futures) // 10)
            for i, (key, future) in enumerate(futures.items(), start=1):
                try:
                    results[key] = future.result()
                except Exception as exc:  # noqa: BLE001 - any explainer: a row, not a crash
                    results[key] = CallResult(
                        status="error", error=mask_text(f"{type(exc).__name__}: {exc}")
                    )
                if i % step == 0 or i == len(futures):
                    log(
                        f"explained {i}/{len(futures)} groups "
                        f"({time.perf_counter() - t0:.1f}s)"
                    )

    now = datetime.now(UTC)
    rows, entries = [], []
    for rank, group in enumerate(groups, start=1):
        base = {
            "group_key": group.key,
            "group_size": group.size,
            "call_id": None,
            "error": None,
            "raw_response": None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "latency_ms": 0.0,
            "attempts": 0,
            "trace_id": None,
        }
        explanation = None
        if rank > settings.max_groups:
            base.update(
                enrichment_status="skipped_budget",
                error=f"budget: group ranked {rank} of {len(groups)} (CRITICAL first, "
                f"then size x severity), budget {settings.max_groups} groups",
            )
        elif group.key in cached:
            explanation = cached[group.key]
            base.update(enrichment_status="cached")
        elif unreachable:
            base.update(enrichment_status="endpoint_unreachable", error=unreachable)
        else:
            res = results[group.key]
            explanation = res.explanation
            base.update(
                enrichment_status=res.status,
                error=res.error,
                raw_response=res.raw_response,
                prompt_tokens=res.prompt_tokens,
                completion_tokens=res.completion_tokens,
                latency_ms=res.latency_ms,
                attempts=res.attempts,
                call_id=f"{run_id}:{group.key}",
                trace_id=trace(res, group.key) if trace and res.messages else None,
            )
            if res.status == "ok" and cacheable(explanation, payloads[group.key]):
                entries.append(
                    {
                        "cache_key": keys[group.key],
                        "provider": explainer.provider,
                        "model": explainer.model,
                        "prompt_version": prompt.key,
                        "group_key": group.key,
                        "evidence_fingerprint": fingerprints[group.key],
                        "explanation_json": explanation.model_dump_json(),
                        "created_at": now,
                    }
                )
        for record in group.rows.to_dict("records"):
            rows.append(
                {
                    "event_id": record["event_id"],
                    "batch_id": record["batch_id"],
                    "user_id": record["user_id"],
                    "event_type": record["event_type"],
                    "event_time": pd.Timestamp(record["event_time"]).to_pydatetime(),
                    "anomaly_score": float(record["anomaly_score"]),
                    "severity_percentile": float(record["severity_percentile"]),
                    "anomaly_status": record["status"],
                    "top_features": as_list(record["top_features"]),
                    **base,
                    **_explanation_columns(explanation),
                    "provider": explainer.provider,
                    "model": explainer.model,
                    "prompt_name": prompt.name,
                    "prompt_version": prompt.version,
                    "enriched_at": now,
                }
            )
    counts = {s: 0 for s in STATUSES}
    for row in rows:
        counts[row["enrichment_status"]] += 1
    calls = [r for r in results.values()]
    stats = {
        "anomalies": len(rows),
        "groups": len(groups),
        "calls": len(calls),
        "cache_hits": len(cached),
        "cache_misses": len(to_call),
        "status_counts": counts,
        "prompt_tokens": sum(r.prompt_tokens for r in calls),
        "completion_tokens": sum(r.completion_tokens for r in calls),
        "seconds": time.perf_counter() - t0,
    }
    return Outcome(rows, entries, stats)


def with_attempts(
    rows: list[dict], previous: dict[str, dict], run_id: str, max_runs: int
) -> list[dict]:
    """``rows`` with their attempt record: ``failed_runs`` (runs in a row without a valid
    explanation, this one included), ``will_retry`` (a later run explains the row again)
    and ``attempt_history`` (the latest HISTORY_KEPT runs: run id, time, status, error)."""
    out = []
    for row in rows:
        before = previous.get(row["event_id"], {})
        failed = row["enrichment_status"] not in EXPLAINED
        runs = (int(before.get("failed_runs") or 0) + 1) if failed else 0
        history = [
            *(before.get("attempt_history") or []),
            {
                "run_id": run_id,
                "at": row["enriched_at"],
                "status": row["enrichment_status"],
                "error": row["error"],
            },
        ][-HISTORY_KEPT:]
        out.append(
            {
                **row,
                "failed_runs": runs,
                "will_retry": row["enrichment_status"] in RETRYABLE and runs < max_runs,
                "attempt_history": history,
            }
        )
    return out


def evidence_fingerprint(payload: dict) -> str:
    """Hash of what shaped an answer and holds from batch to batch: the segment, the three
    strongest contributors, the severity bands present, the drifted features and the
    features' definitions. Counts, scores and examples are left out: they differ every
    batch, and a cached text must not state them (``cacheable``); a hit is checked against
    the group's own evidence again before it is used (``reusable``)."""
    evidence = {
        "segment": payload["segment"],
        "group_factors": payload["group_factors"],
        # the three strongest, as a set: their order and the rest move batch to batch
        "contributors": sorted(list(payload["top_contributions"])[:3]),
        "bands": sorted(payload.get("statuses", {})),
        "drift": payload.get("drift", []),
        "features": FEATURE_FINGERPRINT,
    }
    text = json.dumps(evidence, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(explainer, prompt_key: str, group_key: str, fingerprint: str) -> str:
    """Provider, model, prompt (name/version@text hash), group key and evidence fingerprint: an answer is
    reused only for the same question put the same way to the same model."""
    parts = (explainer.provider, explainer.model, prompt_key, group_key)
    return f"{'|'.join(parts)}|{fingerprint}"


def cacheable(explanation: AnomalyExplanation, payload: dict) -> bool:
    """Only answers that state no batch-specific figure are reused: the figures they may
    state are those of the feature definitions ("the last 10 minutes"); a count or a score
    belongs to one batch (the rows carry theirs in columns). Ungrounded answers never get
    this far."""
    lasting = {"feature_definitions": payload.get("feature_definitions", {})}
    return not unsupported_numbers(explanation, lasting)


def reusable(entry: str | None, payload: dict) -> AnomalyExplanation | None:
    """A cached answer, if it still parses and passes the evidence checks on this group's
    data; None sends the group to the model."""
    if entry is None:
        return None
    try:
        explanation = AnomalyExplanation.model_validate_json(entry)
    except ValidationError:  # the model's limits changed since it was cached
        return None
    return None if violations(explanation, payload) else explanation


def cache_from_rows(rows) -> dict[str, str]:
    """Latest explanation per cache key from cache table rows (already filtered for
    expiry)."""
    best: dict[str, tuple] = {}
    for row in rows:
        key = row["cache_key"]
        if key not in best or row["created_at"] > best[key][0]:
            best[key] = (row["created_at"], row["explanation_json"])
    return {key: value for key, (_, value) in best.items()}
