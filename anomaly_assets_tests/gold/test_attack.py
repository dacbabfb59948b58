"""The ATT&CK mapping: every threat mapped by default, every id checked against the pinned
list, and a mistake named (gold/attack.py)."""

import pytest

from anomaly_assets.gold.attack import (
    DEFAULT_TECHNIQUES,
    attack_version,
    checked,
    pinned,
    tactics_of,
    techniques,
)
from anomaly_assets.silver.catalogue import THREAT_FEATURES


def test_the_default_maps_every_threat_to_pinned_techniques():
    assert set(DEFAULT_TECHNIQUES) == set(THREAT_FEATURES)
    assert attack_version() == "17.1"
    listed = pinned()["techniques"]
    for ids in DEFAULT_TECHNIQUES.values():
        assert ids and all(i in listed for i in ids)
    # every technique's tactics are tactics of the list, and its sub-techniques share them
    for tid, technique in listed.items():
        assert set(technique["tactics"]) <= set(pinned()["tactics"]), tid
        parent = tid.split(".")[0]
        if parent != tid:
            assert technique["tactics"] == listed[parent]["tactics"], tid
            assert technique["name"].startswith(listed[parent]["name"] + ": "), tid


def test_a_stream_replaces_only_the_threats_it_names():
    got = techniques({"credential_stuffing": ["T1110.003", "T1110.004"]})
    assert got["credential_stuffing"] == ("T1110.003", "T1110.004")
    assert got["data_exfiltration"] == DEFAULT_TECHNIQUES["data_exfiltration"]


@pytest.mark.parametrize(
    "mapping, named",
    [
        ({"credential_stuffing": ["T1110.4"]}, "'T1110.4' is not a technique"),
        ({"credential_stuffing": ["TA0006"]}, "'TA0006' is not a technique"),
        ({"phishing": ["T1566"]}, "unknown threat type 'phishing'"),
        ({"bot_activity": []}, "bot_activity: give at least one technique id"),
    ],
)
def test_a_mistake_is_named(mapping, named):
    with pytest.raises(ValueError, match=named):
        checked(mapping)


def test_tactics_in_the_matrix_order():
    assert tactics_of(["T1567", "T1110.004", "T1078"]) == [
        "Initial Access",
        "Persistence",
        "Privilege Escalation",
        "Defense Evasion",
        "Credential Access",
        "Exfiltration",
    ]
