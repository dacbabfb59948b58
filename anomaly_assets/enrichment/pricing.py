"""What LLM calls cost: list prices per model, shared by the call metrics, the traces and
the evaluation, so the three agree."""

#: USD per million tokens (input, output); unknown models cost 0 and say so.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4o-mini": (0.15, 0.60),
    "offline-rules-v1": (0.0, 0.0),
}


def price_table(extra: dict | None = None) -> dict[str, tuple[float, float]]:
    """The default prices with ``extra`` (model -> [input, output] USD per million) on top."""
    return {**DEFAULT_PRICES, **{k: tuple(v) for k, v in (extra or {}).items()}}


def call_cost(
    prices: dict[str, tuple[float, float]],
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> tuple[float, float]:
    """(input, output) USD of one call's tokens; 0 for a model without a price."""
    price_in, price_out = prices.get(model, (0.0, 0.0))
    return prompt_tokens * price_in / 1e6, completion_tokens * price_out / 1e6
