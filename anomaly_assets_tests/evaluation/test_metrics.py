"""Evaluation metrics on a small enriched fixture, every value worked out by hand."""

import pandas as pd
import pytest

from anomaly_assets.evaluation.metrics import evaluate


def _row(eid, status, call, conf, risk, factors, tops, pt, ct, lat, att, group="g1"):
    return {
        "event_id": eid,
        "enrichment_status": status,
        "call_id": call,
        "confidence": conf,
        "risk_level": risk,
        "top_factors": factors,
        "top_features": tops,
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "latency_ms": lat,
        "attempts": att,
        "group_key": group,
        "model": "gpt-4.1-mini",
    }


ROWS = pd.DataFrame(
    [
        _row("r1", "ok", "c1", 0.8, "high", ["a"], ["a", "b"], 100, 20, 200.0, 1),
        _row("r2", "ok", "c1", 0.8, "high", ["a"], ["a", "c"], 100, 20, 200.0, 1),
        _row("r3", "cached", None, 0.6, "critical", ["b"], ["a"], 0, 0, 0.0, 0, "g2"),
        _row("r4", "invalid", "c2", None, None, None, ["a"], 50, 10, 400.0, 2, "g3"),
        _row("r5", "skipped_budget", None, None, None, None, ["a"], 0, 0, 0.0, 0, "g4"),
        _row("r6", "error", "c3", None, None, None, ["a"], 0, 0, 1000.0, 3, "g5"),
    ]
)
LABELS = {
    "r1": "credential_stuffing",
    "r3": "data_exfiltration",
    "r4": "bot_activity",
    "x1": "impossible_travel",
}


def test_metrics_by_hand():
    m = evaluate(
        ROWS,
        labels=LABELS,
        batch_event_ids={"r1", "r2", "r3", "r4", "r5", "r6", "x1", "x2"},
    )
    assert m["rows_enriched"] == 6
    assert (
        m["status_ok"],
        m["status_cached"],
        m["status_invalid"],
        m["status_error"],
        m["status_skipped_budget"],
        m["status_endpoint_unreachable"],
    ) == (2, 1, 1, 1, 1, 0)
    assert m["validity_pct"] == pytest.approx(60.0)  # 3 explained of 5 attempted
    assert m["confidence_avg"] == pytest.approx((0.8 + 0.8 + 0.6) / 3)
    assert (m["confidence_min"], m["confidence_max"]) == (0.6, 0.8)
    assert (m["risk_low"], m["risk_medium"], m["risk_high"], m["risk_critical"]) == (
        0,
        0,
        2,
        1,
    )
    assert m["groundedness_pct"] == pytest.approx(
        200 / 3
    )  # r3 names b, not among its tops
    assert m["calls"] == 3 and m["cache_hits"] == 1  # c1 shared by two rows counts once
    assert (m["prompt_tokens"], m["completion_tokens"]) == (150, 30)
    assert m["estimated_cost_usd"] == pytest.approx((150 * 0.40 + 30 * 1.60) / 1e6)
    assert m["cost_per_anomaly_usd"] == pytest.approx(m["estimated_cost_usd"] / 6)
    assert m["latency_p50_ms"] == pytest.approx(400.0)
    assert m["latency_p95_ms"] == pytest.approx(940.0)  # 400 + 0.9 * (1000 - 400)
    assert m["retries"] == 3
    assert m["labelled_rows"] == 2 and m["risk_agreement_pct"] == 100.0
    assert m["flagged_precision"] == pytest.approx(3 / 6)
    assert m["flagged_recall"] == pytest.approx(3 / 4)  # x1 was never flagged


def test_without_labels_and_with_a_custom_price():
    m = evaluate(ROWS, prices={"gpt-4.1-mini": (1.0, 2.0)})
    assert m["estimated_cost_usd"] == pytest.approx((150 * 1.0 + 30 * 2.0) / 1e6)
    assert m["risk_agreement_pct"] is None and m["flagged_recall"] is None
