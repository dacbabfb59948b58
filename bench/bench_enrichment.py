"""LLM enrichment cost: group-based calls vs one call per event, on the same anomalies.

10,000 anomalies across the six generator types, explained through the real ``openai``
client against the local Azure-protocol server with 300 ms latency per call. Prints calls,
tokens, wall time and an estimated cost for both approaches, measured in the same run.

``python bench/bench_enrichment.py [--anomalies 10000] [--latency 0.3] [--concurrency 16]``
"""

import argparse
import random
from datetime import UTC, datetime, timedelta

import pandas as pd

from anomaly_assets.devtools.fake_azure_openai import FakeAzureOpenAI
from anomaly_assets.llm.enrich import EnrichmentSettings, enrich
from anomaly_assets.llm.prompts import load_prompt
from anomaly_assets.resources.llm import AzureOpenAIResource

#: gpt-4.1-mini list prices, USD per million tokens (input, output).
PRICE = (0.40, 1.60)

#: Per anomaly type: (segment, main contributors, other features that may come second/third).
TYPES = {
    "credential_stuffing": (
        "login",
        ["failed_logins_10m", "failed_login_ips_10m"],
        ["is_new_ip", "events_1m", "distinct_ips_1h"],
    ),
    "impossible_travel": (
        "login",
        ["is_new_country", "distinct_countries_24h"],
        ["is_new_ip", "is_new_device"],
    ),
    "data_exfiltration": (
        "file_download",
        ["bytes_log", "bytes_vs_user_mean"],
        ["duration_ms_log", "events_5m"],
    ),
    "high_value_purchase": (
        "purchase",
        ["amount_vs_user_mean", "amount_log"],
        ["hour_deviation"],
    ),
    "bot_activity": (
        "page_view",
        ["events_1m", "events_5m"],
        ["seconds_since_prev", "duration_ms_log"],
    ),
    "account_takeover": (
        "password_reset",
        ["is_new_device", "is_new_country"],
        ["is_new_ip", "hour_deviation"],
    ),
}


def synthetic_anomalies(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        kind = list(TYPES)[i % len(TYPES)]
        segment, main, others = TYPES[kind]
        # mostly the type's two main features; sometimes a secondary one takes second place
        tops = [
            main[0],
            main[1] if rng.random() < 0.8 else rng.choice(others),
            rng.choice(others),
        ]
        contrib = {
            f: round(0.3 / (k + 1) + rng.random() * 0.01, 4) for k, f in enumerate(tops)
        }
        severity = rng.uniform(99.0, 100.0)
        rows.append(
            {
                "event_id": f"e{i}",
                "batch_id": "bench",
                "user_id": f"u{i % 900:04d}",
                "event_type": segment,
                "event_time": t0 + timedelta(seconds=i),
                "anomaly_score": 0.6 + severity / 1000,
                "severity_percentile": severity,
                "status": "CRITICAL" if severity >= 99.9 else "WARNING",
                "top_features": tops,
                "feature_contributions": contrib,
                "session_id": f"s{i}",
                "ip_address": f"23.{i % 250}.1.2",
                "country": "US",
                "device_type": "desktop",
                "user_agent": "Mozilla/5.0",
                "success": False,
                "amount": None,
                "items": None,
                "bytes_transferred": None,
                "duration_ms": 120,
            }
        )
    return pd.DataFrame(rows)


def run(fake, anomalies, mode: str, max_groups: int, concurrency: int):
    before = fake.completion_calls
    llm = AzureOpenAIResource(
        endpoint=fake.endpoint,
        api_key="bench",
        timeout_s=30,
        max_concurrency=concurrency,
    )
    outcome = enrich(
        anomalies,
        llm.explainer(),
        load_prompt(),
        EnrichmentSettings(mode=mode, max_groups=max_groups),
        max_concurrency=concurrency,
    )
    s = outcome.stats
    cost = (s["prompt_tokens"] * PRICE[0] + s["completion_tokens"] * PRICE[1]) / 1e6
    return {
        "calls": fake.completion_calls - before,
        "prompt": s["prompt_tokens"],
        "completion": s["completion_tokens"],
        "seconds": s["seconds"],
        "cost": cost,
        "explained": s["status_counts"]["ok"],
        "rows": s["anomalies"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--anomalies", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    anomalies = synthetic_anomalies(args.anomalies)
    with FakeAzureOpenAI(latency_s=args.latency) as fake:
        grouped = run(fake, anomalies, "group", 10_000, args.concurrency)
        per_event = run(fake, anomalies, "event", args.anomalies, args.concurrency)
    print(
        f"\n{args.anomalies:,} anomalies, six types; fake Azure endpoint, {args.latency * 1000:.0f}"
        f" ms per call, {args.concurrency} calls in flight; gpt-4.1-mini prices {PRICE}"
    )
    print(
        f"{'approach':<16}{'calls':>8}{'prompt tok':>12}{'compl. tok':>12}{'wall s':>9}"
        f"{'cost USD':>10}{'rows explained':>16}"
    )
    for name, r in (("group-based", grouped), ("per event", per_event)):
        print(
            f"{name:<16}{r['calls']:>8,}{r['prompt']:>12,}{r['completion']:>12,}"
            f"{r['seconds']:>9.1f}{r['cost']:>10.4f}{r['explained']:>16,}"
        )
    print(
        f"group-based / per event: calls x{grouped['calls'] / per_event['calls']:.4f}, "
        f"cost x{grouped['cost'] / per_event['cost']:.4f}, "
        f"time x{grouped['seconds'] / per_event['seconds']:.4f}"
    )


if __name__ == "__main__":
    main()
