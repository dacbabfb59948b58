"""Which alerts a batch's incident and risk changes call for, and what each channel gets.

Plain functions over dicts: the step (alerts/assets.py) reads the rows, these decide.

**Exactly once per state.** An alert's idempotency key hashes the channel, the subject
(incident or user) and its state. The outbox keeps every key it has seen, so a re-run,
which computes the same states, adds nothing.

- An incident is alerted when it opens (no alert for it on the channel yet) and again when
  it escalates: a higher status, or a threat type no alert of it named. An incident that
  shrinks or calms down is not alerted again.
- A user's risk is alerted when it reaches a level of the route and no alert of the same or
  a higher level was raised in the risk window before.
- An incident that disappears (its anomalies re-scored as normal) resolves what was
  triggered for it, on the channels that track incidents (PagerDuty).

**Noise control**, in this order, each alert not sent recorded with its reason: suppression
rules (known false positives, analysts' dismissals and the patterns learned from them),
thresholds tuned from analysts' answers, snoozes, then the channel's hourly rate limit.
"""

import hashlib
import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from anomaly_assets.alerts.settings import STATUSES, AlertsSpec, matches
from anomaly_assets.gold.risk import LEVEL_ORDER

#: Channel types that open and resolve an incident of their own (the rest only notify).
TRACKING = ("pagerduty",)


def key_of(stream: str, channel: str, subject: str, state: str) -> str:
    """The idempotency key of an alert: 32 hex digits of SHA-256."""
    text = f"{stream}\x1f{channel}\x1f{subject}\x1f{state}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def incident_state(incident: dict) -> str:
    return f"{incident['status']}:{','.join(sorted(incident['threat_types'] or ()))}"


@dataclass(frozen=True)
class Candidate:
    """An alert the data calls for, before routing."""

    kind: str  # "incident", "risk" or "resolve"
    subject: str  # incident id, or user id for risk alerts
    user_id: str
    state: str
    status: str  # the incident's status; for risk alerts, the risk level
    threat_types: tuple[str, ...]
    #: for an update: the state alerted first, whose message it follows
    first_state: str | None = None
    networks: tuple[str, ...] = ()
    facts: dict = field(default_factory=dict, hash=False, compare=False)


def _escalated(state: str, earlier: list[str]) -> bool:
    """``state`` (STATUS:threats) is above every state in ``earlier``."""
    status, threats = state.split(":", 1)
    top = max(STATUSES.index(s.split(":", 1)[0]) for s in earlier)
    named = {t for s in earlier for t in s.split(":", 1)[1].split(",") if t}
    new_threats = {t for t in threats.split(",") if t} - named
    return STATUSES.index(status) > top or bool(new_threats)


def incident_candidates(incidents: list[dict], alerted: dict[str, list[str]]):
    """Candidates for changed ``incidents`` (dicts with incident_id, user_id, status,
    threat_types; ``networks``: the IPs of its events) given the states already alerted
    per incident (``alerted``, oldest first, any channel)."""
    for incident in incidents:
        state = incident_state(incident)
        earlier = alerted.get(incident["incident_id"], [])
        if earlier and (state in earlier or not _escalated(state, earlier)):
            continue
        yield Candidate(
            "incident",
            incident["incident_id"],
            incident["user_id"],
            state,
            incident["status"],
            tuple(sorted(incident["threat_types"] or ())),
            first_state=earlier[0] if earlier else None,
            networks=tuple(incident.get("networks") or ()),
            facts=incident,
        )


def risk_candidates(
    risks: list[dict],
    alerted: dict[str, list[tuple[str, datetime]]],
    window_days: float,
):
    """Candidates for changed risk rows, given the risk levels already alerted per user
    with the ``as_of`` they were raised at."""
    for risk in risks:
        level = risk["risk_level"]
        if level == "none":
            continue
        since = risk["as_of"] - timedelta(days=window_days)
        raised = [lv for lv, at in alerted.get(risk["user_id"], []) if at > since]
        if any(LEVEL_ORDER.index(lv) >= LEVEL_ORDER.index(level) for lv in raised):
            continue
        yield Candidate(
            "risk",
            risk["user_id"],
            risk["user_id"],
            f"risk:{level}:{risk['as_of'].isoformat()}",
            level,
            tuple(sorted(risk["threat_contributions"] or {})),
            facts=risk,
        )


def resolve_candidates(gone: list[dict], triggered: dict[str, dict]):
    """Resolutions for incidents that are gone (ids in ``gone``) and were triggered on a
    tracking channel (``triggered``: incident id -> its first alert's facts)."""
    for incident in gone:
        first = triggered.get(incident["incident_id"])
        if first is not None:
            yield Candidate(
                "resolve",
                incident["incident_id"],
                first["user_id"],
                "resolved",
                "RESOLVED",
                (),
                first_state=first["state"],
                facts=first,
            )


@dataclass(frozen=True)
class Routed:
    """A candidate bound for one channel, with what noise control decided."""

    candidate: Candidate
    channel: str
    key: str
    status: str  # pending, suppressed, snoozed, rate_limited
    reason: str = ""
    update_of: str | None = None


def _route_takes(route, candidate: Candidate) -> bool:
    if candidate.kind == "risk":
        return LEVEL_ORDER.index(candidate.status) >= LEVEL_ORDER.index(
            route.min_risk_level
        )
    if candidate.kind == "incident" and STATUSES.index(
        candidate.status
    ) < STATUSES.index(route.min_status):
        return False
    if route.threat_types is None:
        return True
    return bool(set(route.threat_types) & set(candidate.threat_types))


def _in_networks(ips: tuple[str, ...], networks: list[str]) -> bool:
    """Every one of ``ips`` is inside one of ``networks`` (an incident partly from
    elsewhere is not the known egress)."""
    if not ips:
        return False
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    try:
        return all(any(ipaddress.ip_address(ip) in n for n in nets) for ip in ips)
    except ValueError:  # an address the event made up: not a known network
        return False


def _suppressed_by(spec: AlertsSpec, c: Candidate) -> str | None:
    for rule in spec.suppressions:
        if rule.users and not matches(rule.users, c.user_id):
            continue
        if rule.threat_types and not set(rule.threat_types) & set(c.threat_types):
            continue
        if rule.networks and not _in_networks(c.networks, rule.networks):
            continue
        return rule.reason
    return None


def _snoozed_by(spec: AlertsSpec, c: Candidate, now: datetime) -> str | None:
    for snooze in spec.snoozes:
        if snooze.until <= now:
            continue
        if snooze.users and not matches(snooze.users, c.user_id):
            continue
        if snooze.threat_types and not set(snooze.threat_types) & set(c.threat_types):
            continue
        return f"snoozed until {snooze.until.isoformat()}" + (
            f": {snooze.reason}" if snooze.reason else ""
        )
    return None


def _dismissed_by(
    c: Candidate, dismissals: list, patterns: list, now: datetime
) -> str | None:
    """An incident no more than one an analyst dismissed for its user, or a risk alert
    all of whose drivers were dismissed (feedback/suppression.py); an incident of a
    pattern analysts dismissed across users (feedback/patterns.py)."""
    top, severity = c.facts.get("top_features") or (), c.facts.get("max_severity")
    for d in dismissals:
        if d.until <= now:
            continue
        if c.kind == "incident" and d.covers(
            c.user_id, c.threat_types, c.status, top, severity
        ):
            return d.reason
        if c.kind == "risk" and d.covers_risk(c.user_id, c.threat_types):
            return d.reason
    if c.kind == "incident":
        for p in patterns:
            if p.covers(c.threat_types, top, c.status, severity):
                return p.reason
    return None


def _below_tuned(c: Candidate, thresholds: dict) -> str | None:
    """An incident below the threshold analysts' answers tuned for each of its threat
    types (an untyped incident, or one with an untuned type, is not held back)."""
    score = c.facts.get("max_severity")
    if c.kind != "incident" or not c.threat_types or score is None:
        return None
    if any(t not in thresholds for t in c.threat_types):
        return None
    bars = [thresholds[t] for t in c.threat_types]
    if score >= min(b.threshold for b in bars):
        return None
    b = min(bars, key=lambda b: b.threshold)
    return (
        f"below the threshold tuned from analysts' answers: {b.threat_type} alerts "
        f"from severity {b.threshold:.2f} (precision {b.precision_at_threshold:.2f} "
        f"there, {b.precision:.2f} over all {b.answered} answers)"
    )


def severity(c: Candidate) -> int:
    """Which alerts the hourly budget serves first: resolves, then the most severe."""
    if c.kind == "resolve":
        return 10
    if c.kind == "risk":
        return 1 + 2 * LEVEL_ORDER.index(c.status)  # critical 9 ... none 1
    return 4 + 4 * STATUSES.index(c.status)  # CRITICAL 8, WARNING 4


def route(
    spec: AlertsSpec,
    stream: str,
    candidates: list[Candidate],
    sent_last_hour: dict[str, int],
    now: datetime,
    sent: set[str] = frozenset(),
    thresholds: dict | None = None,
    dismissals: list = (),
    patterns: list = (),
) -> list[Routed]:
    """Each candidate once per channel a route takes it to, with noise control applied,
    the most severe first. ``sent_last_hour``: alerts each channel was sent (or is due to
    be) in the hour before; ``sent``: keys of alerts sent or on their way, which an update
    on the same channel follows (without one on its channel, an escalation is a first
    alert there); ``thresholds``: threat type -> its tuned ThreatPrecision;
    ``dismissals``: analysts' dismissals in force; ``patterns``: the patterns learned
    from them."""
    thresholds = thresholds or {}
    budget = {
        name: spec.rate_limit_per_hour - sent_last_hour.get(name, 0)
        for name in spec.channels
    }
    out = []
    for c in sorted(candidates, key=lambda c: (-severity(c), c.subject, c.state)):
        channels = []
        for r in spec.routes:
            if c.kind == "resolve" or _route_takes(r, c):
                channels += [ch for ch in r.channels if ch not in channels]
        for name in channels:
            tracking = spec.channels[name].type in TRACKING
            if c.kind == "resolve" and not tracking:
                continue
            key = key_of(stream, name, c.subject, c.state)
            parent = c.first_state and key_of(stream, name, c.subject, c.first_state)
            update_of = parent if parent in sent else None
            if c.kind == "resolve" and update_of is None:
                continue  # nothing was triggered on this channel
            status, reason = "pending", ""
            if c.kind != "resolve":
                why = (
                    _suppressed_by(spec, c)
                    or _dismissed_by(c, dismissals, patterns, now)
                    or _below_tuned(c, thresholds)
                )
                if why is not None:
                    status, reason = "suppressed", why
                elif (why := _snoozed_by(spec, c, now)) is not None:
                    status, reason = "snoozed", why
                elif budget[name] <= 0:
                    status = "rate_limited"
                    reason = f"over {spec.rate_limit_per_hour} alerts in an hour"
                else:
                    budget[name] -= 1
            out.append(Routed(c, name, key, status, reason, update_of))
    return out
