"""A stream's declaration: valid exactly when its contract can feed its features and event
types; every mistake an error that names its field."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from anomaly_assets.components.spec import CONTRACT_FIELDS, CORE_FIELDS, StreamSpec
from anomaly_assets.contract import EVENT_TYPES, REQUIRED_BY_EVENT_TYPE
from anomaly_assets.silver.features import FEATURE_INPUTS, FEATURES

OPTIONAL = [f for f in CONTRACT_FIELDS if f not in CORE_FIELDS]


def errors(**spec) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        StreamSpec(**{"key_prefix": ["s"], **spec})
    return caught.value.errors()


@settings(max_examples=150, deadline=None)
@given(
    fields=st.sets(st.sampled_from(OPTIONAL)),
    features=st.sets(st.sampled_from(list(FEATURES)), min_size=1),
    types=st.sets(st.sampled_from(EVENT_TYPES), min_size=1),
)
def test_valid_exactly_when_the_contract_feeds_features_and_event_types(
    fields, features, types
):
    contract = [*CORE_FIELDS, *sorted(fields)]
    starved = {
        f: [c for c in FEATURE_INPUTS[f] if c not in contract] for f in sorted(features)
    }
    needy = {
        t: [c for c in REQUIRED_BY_EVENT_TYPE.get(t, ()) if c not in contract]
        for t in sorted(types)
    }
    spec = {
        "key_prefix": ["payments"],
        "kafka": {"topic": "payments"},
        "contract": {"fields": contract, "event_types": sorted(types)},
        "features": sorted(features),
    }
    if not any(needy.values()) and not any(starved.values()):
        built = StreamSpec(**spec)
        assert built.features == sorted(features)
        return
    found = errors(**spec)
    error = found[0]
    if any(needy.values()):  # the contract fails first, and the features say nothing
        assert error["loc"] == ("contract",)
        event_type, missing = next((t, m) for t, m in needy.items() if m)
        assert (
            f"event type {event_type!r} needs contract field(s) {missing}"
            in error["msg"]
        )
    else:  # the first feature left short, at its own place in the list
        feature, missing = next((f, m) for f, m in starved.items() if m)
        assert error["loc"] == ("features", sorted(features).index(feature))
        assert f"feature {feature!r} needs contract field(s) {missing}" in error["msg"]


@pytest.mark.parametrize(
    ("spec", "loc", "says"),
    [
        ({}, ("kafka",), "Field required"),
        ({"kafka": {}}, ("kafka", "topic"), "Field required"),
        ({"kafka": {"topic": ""}}, ("kafka", "topic"), "at least 1 character"),
        ({"kafka": {"topic": "t", "topik": "t"}}, ("kafka", "topik"), "Extra inputs"),
        (
            {"kafka": {"topic": "t"}, "features": ["events_1m", "events_2m"]},
            ("features", 1),
            "Input should be 'events_1m', 'events_5m'",
        ),
        (
            {"kafka": {"topic": "t"}, "severity": {"critical_at": "high"}},
            ("severity", "critical_at"),
            "valid number",
        ),
        (
            {"kafka": {"topic": "t"}, "severity": {"critical_at": 150}},
            ("severity", "critical_at"),
            "less than 100",
        ),
        (
            {"kafka": {"topic": "t"}, "model": {"threshold_percentile": 40}},
            ("model", "threshold_percentile"),
            "greater than 50",
        ),
        (
            {"kafka": {"topic": "t"}, "contract": {"fields": ["event_id", "colour"]}},
            ("contract", "fields"),
            "unknown contract field(s) ['colour']",
        ),
        (
            {"kafka": {"topic": "t"}, "enrichment": {"provider": "bard"}},
            ("enrichment", "provider"),
            "'llm' or 'offline'",
        ),
        ({"key_prefix": [], "kafka": {"topic": "t"}}, ("key_prefix",), "at least 1"),
        (
            {"key_prefix": ["silver_events"], "kafka": {"topic": "t"}},
            ("key_prefix",),
            "'silver_events' is a table or folder of the default stream",
        ),
        (
            {"key_prefix": ["_kafka"], "kafka": {"topic": "t"}},
            ("key_prefix", 0),
            "should match pattern",
        ),
        (
            {"kafka": {"topic": "t"}, "contract": {"event_types": []}},
            ("contract", "event_types"),
            "at least 1",
        ),
        (
            {"key_prefix": ["pay-ments"], "kafka": {"topic": "t"}},
            ("key_prefix", 0),
            "should match pattern",
        ),
        (
            {"kafka": {"topic": "t"}, "attack": {"credential_stuffing": ["T1110.4"]}},
            ("attack",),
            "'T1110.4' is not a technique of ATT&CK Enterprise v17.1",
        ),
        (
            {"kafka": {"topic": "t"}, "risk": {"half_life_days": 0}},
            ("risk", "half_life_days"),
            "greater than 0",
        ),
    ],
)
def test_each_mistake_names_its_field(spec, loc, says):
    (error,) = errors(**spec)
    assert error["loc"] == loc and says in error["msg"], error


def test_a_stream_of_defaults_is_todays_pipeline_under_its_prefix():
    """Only a prefix and a topic: the default stream's features, event types and every
    setting the launchpad shows, so a new stream starts where the default one is."""
    from anomaly_assets.enrichment.assets import EnrichmentConfig
    from anomaly_assets.evaluation.assets import EvalConfig
    from anomaly_assets.gold.assets import ScoringConfig
    from anomaly_assets.gold.risk_asset import RiskConfig
    from anomaly_assets.model.assets import TrainConfig
    from anomaly_assets.silver.features import stream_features
    from anomaly_assets.stream import DEFAULT_STREAM

    stream = StreamSpec(key_prefix=["p"], kafka={"topic": "t"}).to_stream()
    assert stream_features(stream) == stream_features(DEFAULT_STREAM)
    assert stream.event_types == DEFAULT_STREAM.event_types
    assert (stream.name, stream.topic, dict(stream.kafka_settings)) == ("p", "t", {})
    for base, op in [
        (TrainConfig, "anomaly_model"),
        (ScoringConfig, "gold"),
        (EnrichmentConfig, "enrichment"),
        (EvalConfig, "ai_enrichment_eval_metrics"),
        (RiskConfig, "gold_user_risk"),
    ]:
        assert stream.config(base, op)().model_dump() == base().model_dump(), op


def test_a_streams_settings_become_its_launchpad_defaults():
    stream = StreamSpec(
        key_prefix=["payments"],
        kafka={"topic": "pay", "max_batch_events": 500},
        model={"threshold_percentile": 97.5},
        severity={"critical_at": 99.0},
        enrichment={"max_groups": 7, "redact_columns": ["user_id"]},
        risk={"window_days": 14},
        attack={"bot_activity": ["T1119", "T1595"]},
    ).to_stream()
    from anomaly_assets.enrichment.assets import EnrichmentConfig
    from anomaly_assets.gold.assets import ScoringConfig
    from anomaly_assets.gold.risk_asset import RiskConfig
    from anomaly_assets.model.assets import TrainConfig

    assert dict(stream.kafka_settings) == {"max_batch_events": 500}
    assert stream.config(TrainConfig, "anomaly_model")().threshold_percentile == 97.5
    assert stream.config(ScoringConfig, "gold")().critical_at == 99.0
    enrichment = stream.config(EnrichmentConfig, "enrichment")()
    assert (enrichment.max_groups, enrichment.redact_columns) == (7, ["user_id"])
    assert stream.config(RiskConfig, "gold_user_risk")().window_days == 14
    assert dict(stream.attack) == {"bot_activity": ("T1119", "T1595")}
    # a launchpad value still wins over the stream's default
    assert stream.config(ScoringConfig, "gold")(critical_at=99.5).critical_at == 99.5
