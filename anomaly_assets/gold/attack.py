"""MITRE ATT&CK: the techniques each threat type evidences, checked against a pinned list.

The list (``attack_enterprise.json``) names its ATT&CK version and holds the Enterprise
techniques an identity and web-activity stream can evidence, each with its tactics. A
stream's ``attack:`` section replaces the techniques of the threats it names; every id it
uses must be in the list, so a typo or an id from another matrix is an error at load time
(``dg check``), not a wrong label on an incident.
"""

import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files

from anomaly_assets.silver.catalogue import THREAT_FEATURES

#: The documented default: threat type -> ATT&CK technique ids, strongest evidence first.
DEFAULT_TECHNIQUES: dict[str, tuple[str, ...]] = {
    # leaked username / password pairs replayed against the login
    "credential_stuffing": ("T1110.004",),
    # a valid login from a new place and device, then a password reset
    "account_takeover": ("T1078", "T1098"),
    # the account used from two places no traveller could reach in time
    "impossible_travel": ("T1078",),
    # bulk downloads and API transfers leaving through the application
    "data_exfiltration": ("T1567", "T1048"),
    # purchases far above the user's own, with the account's stored means of payment
    "high_value_purchase": ("T1657",),
    # scripted sessions collecting pages and search results
    "bot_activity": ("T1119",),
}


@cache
def pinned() -> dict:
    """The pinned ATT&CK list: ``attack_version``, ``tactics`` (id -> name) and
    ``techniques`` (id -> name and tactic ids)."""
    return json.loads(files(__package__).joinpath("attack_enterprise.json").read_text())


def attack_version() -> str:
    return pinned()["attack_version"]


def checked(mapping: Mapping[str, list[str] | tuple[str, ...]]) -> dict:
    """``mapping`` (threat type -> technique ids) when every threat is one of the model's
    and every id is in the pinned list; otherwise a ValueError naming each mistake."""
    known = pinned()["techniques"]
    errors = [
        f"unknown threat type {threat!r} (known: {sorted(THREAT_FEATURES)})"
        for threat in mapping
        if threat not in THREAT_FEATURES
    ]
    for threat, ids in mapping.items():
        if not ids:
            errors.append(f"{threat}: give at least one technique id")
        errors += [
            f"{threat}: {i!r} is not a technique of ATT&CK Enterprise "
            f"v{attack_version()} in the pinned list (gold/attack_enterprise.json)"
            for i in ids
            if i not in known
        ]
    if errors:
        raise ValueError("; ".join(errors))
    return {threat: tuple(ids) for threat, ids in mapping.items()}


def techniques(overrides: Mapping | None = None) -> dict[str, tuple[str, ...]]:
    """Threat type -> technique ids: the default with a stream's ``overrides``."""
    return {**DEFAULT_TECHNIQUES, **checked(overrides or {})}


def tactics_of(technique_ids) -> list[str]:
    """The tactic names of ``technique_ids``, in the matrix's order, each once."""
    pinned_ = pinned()
    ids = {t for i in technique_ids for t in pinned_["techniques"][i]["tactics"]}
    return [name for tid, name in pinned_["tactics"].items() if tid in ids]


def technique_label(technique_id: str) -> str:
    """``T1110.004 Brute Force: Credential Stuffing``."""
    return f"{technique_id} {pinned()['techniques'][technique_id]['name']}"


checked(DEFAULT_TECHNIQUES)
