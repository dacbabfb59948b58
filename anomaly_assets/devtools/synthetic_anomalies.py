"""Gold anomaly rows joined with their event fields, made up per generator type: what the
enrichment reads, for benches and tests that exercise it without Spark."""

import random
from datetime import UTC, datetime, timedelta

import pandas as pd

#: Per anomaly type: (segment, main contributors, other features that may come second/third).
TYPES = {
    "credential_stuffing": (
        "login",
        ["failed_logins_10m", "failed_login_ips_10m"],
        ["ip_novelty", "events_1m", "distinct_ips_1h"],
    ),
    "impossible_travel": (
        "login",
        ["country_novelty", "distinct_countries_24h"],
        ["ip_novelty", "device_novelty"],
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
        ["device_novelty", "country_novelty"],
        ["ip_novelty", "hour_deviation"],
    ),
}


def synthetic_anomalies(n: int, seed: int = 0, batch: str = "bench") -> pd.DataFrame:
    """``n`` anomalies, the types in turn; severities 99-100 (CRITICAL from 99.9)."""
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
                "event_id": f"{batch}-e{i}",
                "batch_id": batch,
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
