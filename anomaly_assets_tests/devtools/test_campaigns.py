"""The third event mix: campaigns fill the anomaly share, bursts of ordinary traffic carry
no label, and each campaign runs on shared infrastructure (what lets it mask itself)."""

import itertools
import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly_assets.contract import REQUIRED_FIELDS
from anomaly_assets.devtools.campaigns import (
    CAMPAIGN_WEIGHTS,
    FARM_OCTET,
    MARKETING,
    NEW_RELEASE,
    SERVICE_AGENT,
    CampaignScenario,
)


@pytest.fixture(scope="module")
def window():
    stream = CampaignScenario(seed=5, population_seed=7, anomaly_rate=0.05)
    messages = list(itertools.islice(stream, 20_000))
    return stream, messages, [json.loads(m.value) for m in messages]


def test_campaigns_fill_their_share_of_the_anomalies(window):
    _, messages, _ = window
    labels = Counter(m.label.label for m in messages if m.label)
    total = sum(labels.values())
    assert 0.045 <= total / len(messages) <= 0.055
    for kind, weight in CAMPAIGN_WEIGHTS.items():
        assert labels[kind] / total == pytest.approx(weight, abs=0.02), kind
    campaigns = ("bot_activity", "credential_stuffing", "data_exfiltration")
    assert sum(labels[k] for k in campaigns) / len(messages) >= 0.04


def test_each_campaign_shares_its_infrastructure(window):
    stream, messages, events = window
    by_kind = {}
    for message, event in zip(messages, events):
        if message.label:
            by_kind.setdefault(message.label.label, []).append(event)
    farm = {e["ip_address"] for e in by_kind["bot_activity"]}
    assert farm <= set(stream._farm) and all(
        ip.startswith(f"{FARM_OCTET}.") for ip in farm
    )
    insiders = {e["user_id"] for e in by_kind["data_exfiltration"]}
    assert insiders <= {u.user_id for u in stream._insiders}
    assert len({u.split("-")[0] for u in insiders}) == 1  # one organisation
    victims = {e["user_id"] for e in by_kind["credential_stuffing"]}
    assert len(victims) >= 20  # a wave over many accounts, a few tries each
    for event in by_kind["credential_stuffing"]:
        home = next(u for u in stream.users if u.user_id == event["user_id"]).country
        assert event["country"] == home and event["success"] is False


def test_a_takeover_comes_from_a_phone_the_user_never_used(window):
    stream, messages, events = window
    devices = {u.user_id: {agent for _, agent in u.devices} for u in stream.users}
    takeovers = [
        e
        for m, e in zip(messages, events)
        if m.label and m.label.label == "account_takeover"
    ]
    assert takeovers
    assert all(e["user_agent"] not in devices[e["user_id"]] for e in takeovers)


def test_bursts_of_ordinary_traffic_are_unlabelled(window):
    stream, messages, events = window
    batch = [m for m, e in zip(messages, events) if e["user_agent"] == SERVICE_AGENT]
    release = [m for m, e in zip(messages, events) if e["user_agent"] == NEW_RELEASE]
    bundles = [
        m
        for m, e in zip(messages, events)
        if e["event_type"] == "purchase"
        and e.get("items", 0) > 5
        and int(e["event_ts"][11:13]) % 8 == MARKETING
    ]
    for burst in (batch, release, bundles):
        assert len(burst) >= 50
    assert all(m.label is None for m in batch + release)
    # Bundles of many seats are ordinary in a marketing hour (a seat purchase far above the
    # buyer's usual spend is the labelled high-value purchase), and only buyers order them.
    assert sum(m.label is None for m in bundles) > len(bundles) / 2
    assert {json.loads(m.value)["user_id"] for m in bundles} <= {
        u for u, role in stream._role.items() if role == "buyer"
    }


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), rate=st.sampled_from([0.0, 0.01, 0.03, 0.05]))
def test_every_event_keeps_the_contract(seed, rate):
    stream = CampaignScenario(
        seed=seed, population_seed=seed, n_users=60, anomaly_rate=rate
    )
    for message in itertools.islice(stream, 2_000):
        event = json.loads(message.value)
        assert REQUIRED_FIELDS.keys() <= event.keys()
        assert message.key.decode() == event["user_id"]
