"""The schema sent is in the strict subset for any model; the evidence checks accept what
the data supports and name what it does not."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly_assets.devtools.fake_azure_openai import (
    UNSUPPORTED_KEYWORDS,
    schema_errors,
)
from anomaly_assets.enrichment.evidence import unsupported_numbers, violations
from anomaly_assets.enrichment.schema import AnomalyExplanation, strict_schema

PAYLOAD = {
    "segment": "file_download",
    "group_size": 40,
    "severity_range": [99.12, 99.97],
    "statuses": {"CRITICAL": 3, "WARNING": 37},
    "group_factors": ["bytes_1h_log", "transfer_1h_vs_typical"],
    "top_contributions": {
        "bytes_1h_log": 0.21,
        "transfer_1h_vs_typical": 0.13,
        "bytes_vs_user_mean": 0.04,
    },
    "examples": [{"bytes_transferred": 52_428_800, "duration_ms": 14_250}],
}


def answer(**fields) -> AnomalyExplanation:
    base = {
        "summary": "40 downloads moved far more data than the users' usual hour.",
        "user_intent": "Bulk copying of files.",
        "risk_level": "critical",
        "risk_explanation": "Severity up to the 99.97th percentile.",
        "confidence": 0.7,
        "top_factors": ["bytes_1h_log"],
        "recommended_action": "Check the account.",
    }
    return AnomalyExplanation(**{**base, **fields})


leaf = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "number", "integer", "boolean"])},
    # every keyword the service refuses, drawn from its list, not the product's
    optional={k: st.integers(0, 50) for k in sorted(UNSUPPORTED_KEYWORDS)},
)
names = st.text("abcdefghij_", min_size=1, max_size=8) | st.sampled_from(
    sorted(UNSUPPORTED_KEYWORDS)  # a property may be called "format" or "default"
)


def objects(children):
    return st.builds(
        lambda props, extra: {"type": "object", "properties": props, **extra},
        st.dictionaries(names, children, min_size=1, max_size=4),
        st.fixed_dictionaries(
            {},
            optional={
                "required": st.just([]),
                "additionalProperties": st.booleans(),
                "maxProperties": st.integers(1, 9),
            },
        ),
    )


schemas = st.recursive(
    leaf,
    lambda children: (
        objects(children)
        | st.builds(
            lambda items, n: {"type": "array", "items": items, "minItems": n},
            children,
            st.integers(0, 3),
        )
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(objects(schemas))
def test_any_schema_made_strict_is_accepted_and_keeps_its_properties(schema):
    strict = strict_schema(schema)
    assert schema_errors(strict) == []
    assert set(strict["properties"]) == set(schema["properties"])


def test_the_explanation_schema_keeps_its_limits_in_pydantic_only():
    sent = json.dumps(strict_schema(AnomalyExplanation.model_json_schema()))
    assert not any(f'"{k}"' in sent for k in ("maxLength", "minimum", "maxItems"))
    assert AnomalyExplanation.model_json_schema()["properties"]["summary"]["maxLength"]


def test_a_grounded_answer_has_no_violations():
    assert violations(answer(), PAYLOAD) == []


def test_each_kind_of_violation_is_named():
    bad = answer(
        top_factors=["hour_of_day", "bytes_1h_log"],
        risk_level="medium",
        summary="About 7,331 files left in 9 minutes.",
    )
    problems = violations(bad, PAYLOAD)
    assert len(problems) == 3
    assert "['hour_of_day']" in problems[0]
    assert "['7,331', '9']" in problems[1]
    assert "risk_level 'medium' is below 'high'" in problems[2]
    # a WARNING-only group may be judged medium
    assert (
        violations(
            answer(risk_level="medium"), {**PAYLOAD, "statuses": {"WARNING": 40}}
        )
        == []
    )


@given(
    value=st.floats(0.001, 1e7, allow_nan=False),
    places=st.integers(0, 3),
    thousands=st.booleans(),
)
def test_a_figure_from_the_data_at_any_precision_is_supported(value, places, thousands):
    payload = {**PAYLOAD, "examples": [{"amount": value}]}
    figure = f"{value:,.{places}f}" if thousands else f"{value:.{places}f}"
    text = f"The amount was {figure}, which is unusual."
    assert unsupported_numbers(answer(summary=text), payload) == []


@given(st.integers(1000, 10**6))
def test_a_figure_in_no_data_is_caught(n):
    payload = {**PAYLOAD, "examples": []}
    numbers = {40, 99.12, 99.97, 3, 37, 0.21, 0.13, 0.04}
    if n in numbers:
        return
    assert unsupported_numbers(answer(summary=f"{n} events were seen."), payload) == [
        str(n)
    ]


def test_units_percent_and_event_text_are_read_as_they_are_meant():
    payload = {
        **PAYLOAD,
        "examples": [
            {
                "event_time": "2026-11-01T08:47:38+00:00",
                "user_agent": "Mozilla/5.0 (bot 777)",
                "duration_ms": 4821,
            }
        ],
    }

    def unsupported(text):
        return unsupported_numbers(answer(summary=text), payload)

    assert unsupported("Calls took 4821ms, the first at 08:47.") == []
    assert unsupported("12k files in 45s, 4x the usual.") == ["12k", "45s", "4x"]
    # a share of one (0.21) may be cited in percent, not as a bare figure
    assert unsupported("bytes_1h_log gave 21% of the score.") == []
    assert unsupported("bytes_1h_log gave 21 points.") == ["21"]
    # a figure inside an event's own text is no evidence: it may be the attacker's
    assert unsupported("The agent reports 777 sessions.") == ["777"]
