"""LLM enrichment through an imperfect model: group-based calls vs one call per event.

10,000 anomalies across the six generator types, explained through the real ``openai``
client against the local Azure-protocol server (300 ms per call) playing an imperfect model
(20 % of requests go wrong, spread over every fault it knows but a refused key and a long
Retry-After, which stop a run's calls at once). For both approaches, in the
same run: calls, tokens, wall time, estimated cost, the share valid and grounded after
re-asks, and what the next run does with the rows the first could not explain.

``python bench/bench_enrichment.py [--anomalies 10000] [--latency 0.3] [--imperfect 0.2]``
"""

import argparse

import pandas as pd

from anomaly_assets.devtools.fake_azure_openai import (
    FAULTS,
    FakeAzureOpenAI,
    ImperfectModel,
)
from anomaly_assets.devtools.synthetic_anomalies import synthetic_anomalies
from anomaly_assets.enrichment.enrich import EnrichmentSettings, enrich
from anomaly_assets.enrichment.prompts import load_prompt
from anomaly_assets.enrichment.resource import AzureOpenAIResource
from anomaly_assets.enrichment.statuses import EXPLAINED, RETRYABLE
from anomaly_assets.evaluation.metrics import evaluate

#: Faults spread over the requests: all but a refused key and a long Retry-After, which stop
#: a run's calls at once (the next run explains the rows; the tests cover it), and a vague
#: action (a valid answer the judges grade), which came after the README's figures.
BENCH_FAULTS = tuple(f for f in FAULTS if f not in ("401", "429_long", "vague_action"))
#: gpt-4.1-mini list prices, USD per million tokens (input, output).
PRICE = (0.40, 1.60)


def run(fake, anomalies, mode: str, max_groups: int, concurrency: int):
    """One enrichment run: its rows, stats and call count on ``fake``."""
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
    return outcome, fake.completion_calls - before


def two_runs(fake, anomalies, mode: str, concurrency: int) -> dict:
    """A first run over every anomaly, then the run after it, which explains again the
    rows the first could not (as the asset does with its retryable rows)."""
    budget = len(anomalies)
    first, calls = run(fake, anomalies, mode, budget, concurrency)
    rows = pd.DataFrame(first.rows)
    failed = rows.loc[rows["enrichment_status"].isin(RETRYABLE), "event_id"]
    second, calls_2 = run(
        fake,
        anomalies[anomalies["event_id"].isin(set(failed))],
        mode,
        budget,
        concurrency,
    )
    after = pd.concat(
        [rows[~rows["event_id"].isin(set(failed))], pd.DataFrame(second.rows)]
    )
    m1, m2 = evaluate(rows), evaluate(after)
    cost = sum(
        (o.stats["prompt_tokens"] * PRICE[0] + o.stats["completion_tokens"] * PRICE[1])
        / 1e6
        for o in (first, second)
    )
    return {
        "calls": calls,
        "calls_2": calls_2,
        "prompt": first.stats["prompt_tokens"] + second.stats["prompt_tokens"],
        "completion": first.stats["completion_tokens"]
        + second.stats["completion_tokens"],
        "seconds": first.stats["seconds"],
        "seconds_2": second.stats["seconds"],
        "cost": cost,
        "valid": m1["validity_pct"],
        "grounded": m1["groundedness_pct"],
        "retried": len(failed),
        "fixed": int(
            (pd.DataFrame(second.rows)["enrichment_status"].isin(EXPLAINED)).sum()
        )
        if len(failed)
        else 0,
        "explained_after": int(after["enrichment_status"].isin(EXPLAINED).sum()),
        "valid_after": m2["validity_pct"],
        "grounded_after": m2["groundedness_pct"],
        "statuses": first.stats["status_counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--anomalies", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--imperfect",
        type=float,
        default=0.2,
        help="share of requests the local model gets wrong, spread over every fault",
    )
    args = parser.parse_args()
    anomalies = synthetic_anomalies(args.anomalies)
    imperfect = ImperfectModel.uniform(args.imperfect, seed=7, faults=BENCH_FAULTS)
    with FakeAzureOpenAI(
        latency_s=args.latency, imperfect=imperfect, timeout_sleep_s=2.0
    ) as fake:
        grouped = two_runs(fake, anomalies, "group", args.concurrency)
        per_event = two_runs(fake, anomalies, "event", args.concurrency)
    print(
        f"\n{args.anomalies:,} anomalies, six types; local Azure-protocol endpoint, "
        f"{args.latency * 1000:.0f} ms per call, {args.concurrency} calls in flight, "
        f"{args.imperfect:.0%} of requests faulty ({len(BENCH_FAULTS)} kinds: "
        f"{', '.join(BENCH_FAULTS)}); gpt-4.1-mini prices {PRICE}"
    )
    print(
        f"{'approach':<12}{'calls':>8}{'prompt tok':>12}{'compl. tok':>12}{'wall s':>8}"
        f"{'cost USD':>10}{'valid %':>9}{'grounded %':>11}{'2nd run: rows':>15}"
        f"{'calls':>7}{'fixed':>7}{'wall s':>8}{'explained':>11}{'valid %':>9}"
        f"{'grounded %':>11}"
    )
    for name, r in (("group-based", grouped), ("per event", per_event)):
        print(
            f"{name:<12}{r['calls']:>8,}{r['prompt']:>12,}{r['completion']:>12,}"
            f"{r['seconds']:>8.1f}{r['cost']:>10.4f}{r['valid']:>9.1f}"
            f"{r['grounded']:>11.1f}{r['retried']:>15,}{r['calls_2']:>7,}"
            f"{r['fixed']:>7,}{r['seconds_2']:>8.1f}{r['explained_after']:>11,}"
            f"{r['valid_after']:>9.1f}{r['grounded_after']:>11.1f}"
        )
    for name, r in (("group-based", grouped), ("per event", per_event)):
        print(f"{name} first-run statuses: {r['statuses']}")
    print(
        f"group-based / per event (first run): calls "
        f"x{grouped['calls'] / per_event['calls']:.4f}, cost "
        f"x{grouped['cost'] / per_event['cost']:.4f}, time "
        f"x{grouped['seconds'] / per_event['seconds']:.4f}"
    )


if __name__ == "__main__":
    main()
