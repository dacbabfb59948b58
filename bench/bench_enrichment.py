"""LLM enrichment cost: group-based calls vs one call per event, on the same anomalies.

10,000 anomalies across the six generator types, explained through the real ``openai``
client against the local Azure-protocol server with 300 ms latency per call. Prints calls,
tokens, wall time and an estimated cost for both approaches, measured in the same run.

``python bench/bench_enrichment.py [--anomalies 10000] [--latency 0.3] [--concurrency 16]``
"""

import argparse

from anomaly_assets.devtools.fake_azure_openai import FakeAzureOpenAI
from anomaly_assets.devtools.synthetic_anomalies import synthetic_anomalies
from anomaly_assets.llm.enrich import EnrichmentSettings, enrich
from anomaly_assets.llm.prompts import load_prompt
from anomaly_assets.resources.llm import AzureOpenAIResource

#: gpt-4.1-mini list prices, USD per million tokens (input, output).
PRICE = (0.40, 1.60)


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
