"""Deterministic checks that an explanation says only what the data sent supports.

An answer can be valid JSON in the schema and still be wrong: factors the model did not see
among the group's contributors, figures that are not in the data, or a risk level an event
field talked it into. ``violations`` names each such problem; the explainer asks again once
with them, then stores the answer as ``ungrounded``.
"""

import math
import re

from anomaly_assets.enrichment.schema import RISK_LEVELS, AnomalyExplanation

#: Least risk level per anomaly status: a CRITICAL anomaly is never "low" or "medium".
MIN_RISK = {"CRITICAL": "high"}
#: A figure in the text: the number (group 1), then a percent sign (group 2) or a unit glued
#: to it ("12k", "45s", "4821ms", "3x", "99th"); digits glued to a name before them
#: (``events_5m``, ``p99``) are not figures.
NUMBER = re.compile(
    r"(?<![\w.])(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)(?:(%)|[A-Za-z]{1,3})?(?!\w)"
)
TEXT_FIELDS = ("summary", "user_intent", "risk_explanation", "recommended_action")
#: Example fields whose text may be cited for its figures: event times. Other strings of an
#: example (a user agent, a country) are an event's own words: a figure taken from them is
#: no evidence, they may be an attacker's.
EXAMPLE_TEXT_FIELDS = ("event_time",)


def _numbers_in(value, out: set[float]) -> None:
    """Every number in ``value`` (nested JSON data, and the figures inside its strings)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        if math.isfinite(value):
            out.add(float(value))
    elif isinstance(value, str):
        for match in NUMBER.finditer(value):
            parsed = _parse(match.group(1))
            if parsed is not None:
                out.add(parsed)
    elif isinstance(value, dict):
        for key, item in value.items():
            _numbers_in(key, out)
            _numbers_in(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _numbers_in(item, out)


def evidence_numbers(payload: dict) -> set[float]:
    """The numbers of the data sent, without the free text of its examples."""
    data: set[float] = set()
    _numbers_in({k: v for k, v in payload.items() if k != "examples"}, data)
    for example in payload.get("examples", []):
        for key, value in example.items():
            if not isinstance(value, str):
                _numbers_in(value, data)
            elif key in EXAMPLE_TEXT_FIELDS:  # every part of a time: "08" of T08:47
                data |= {float(part) for part in re.findall(r"\d+", value)}
    return data


def _parse(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _supported(text: str, percent: bool, data: set[float]) -> bool:
    """A cited figure is supported when a number sent rounds to it at the precision cited
    (``99.9`` for 99.93, ``12`` for 12.4), or, cited in percent, a share of one does."""
    cited = _parse(text)
    if cited is None:
        return True
    places = _decimals(text)
    return any(
        round(value, places) == cited
        or (percent and round(value * 100, places) == cited)
        for value in data
    )


def unsupported_numbers(explanation: AnomalyExplanation, payload: dict) -> list[str]:
    """Figures in the explanation's text that are nowhere in the data sent."""
    data = evidence_numbers(payload)
    cited = []
    for name in TEXT_FIELDS:
        for match in NUMBER.finditer(getattr(explanation, name)):
            figure, percent = match.group(0), bool(match.group(2))
            if not _supported(match.group(1), percent, data) and figure not in cited:
                cited.append(figure)
    return cited


def violations(explanation: AnomalyExplanation, payload: dict) -> list[str]:
    """What in ``explanation`` the data in ``payload`` does not support (empty: grounded)."""
    out = []
    contributors = set(payload.get("top_contributions", {})) | set(
        payload.get("group_factors", [])
    )
    foreign = [f for f in explanation.top_factors if f not in contributors]
    if foreign:
        out.append(
            f"top_factors {foreign} are not among the group's contributors "
            f"{sorted(contributors)}"
        )
    numbers = unsupported_numbers(explanation, payload)
    if numbers:
        out.append(f"figures {numbers} do not appear in the data sent")
    statuses = payload.get("statuses", {})
    for status, least in MIN_RISK.items():
        if statuses.get(status) and RISK_LEVELS.index(
            explanation.risk_level
        ) < RISK_LEVELS.index(least):
            out.append(
                f"risk_level {explanation.risk_level!r} is below {least!r}, the least for "
                f"{status} anomalies"
            )
    return out


def correction(problems: list[str]) -> str:
    """The message that asks again, naming what was wrong."""
    return (
        "Your previous answer broke these rules: "
        + "; ".join(problems)
        + ". Answer again in the same JSON format, citing only factors among the group's "
        "contributors and figures present in the data."
    )
