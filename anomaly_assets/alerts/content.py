"""What an alert says: one plain, redacted record per alert, which each channel renders.

Every text that came from an event or from the model (user ids, event types, the
explanation) is data: it passes the stream's secret masking (``mask_text``), loses control
characters, is cut to a length, and the channels put it where their format shows text as
text (Slack ``plain_text`` objects, escaped HTML, JSON strings). No secret is included:
channel credentials are read from the environment when sending, never stored here.
"""

import re
from urllib.parse import quote

from anomaly_assets.enrichment.redaction import mask_text
from anomaly_assets.gold.attack import technique_label

#: Longest text of one field in an alert.
MAX_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def clean(value, max_chars: int = MAX_CHARS) -> str:
    """``value`` as inert text: masked, without control or bidi characters, cut."""
    text = _CONTROL.sub(" ", mask_text(str(value)))
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def asset_url(base: str, key_path: tuple[str, ...]) -> str:
    return f"{base.rstrip('/')}/assets/{'/'.join(quote(p) for p in key_path)}"


def trace_url(base: str, trace_id: str | None) -> str | None:
    if not trace_id:
        return None
    return f"{base.rstrip('/')}/#/traces/{quote(trace_id)}"


def deterministic_summary(incident: dict) -> str:
    """What the data says, when no grounded explanation is at hand."""
    types = ", ".join(incident.get("event_types") or ()) or "events"
    signals = ", ".join(incident.get("top_features") or ()) or "several features"
    return (
        f"{incident.get('event_count', 0)} anomalous {types} of one user between "
        f"{incident['first_seen']:%Y-%m-%d %H:%M} and {incident['last_seen']:%H:%M} UTC; "
        f"strongest signals: {signals}."
    )


def record(
    candidate_kind: str,
    facts: dict,
    risk: dict | None,
    explanation: dict | None,
    links: dict,
    update: bool,
) -> dict:
    """The alert's content for an incident, risk or resolve alert (see module doc)."""
    threats = sorted(facts.get("threat_types") or ())
    techniques = sorted(facts.get("attack_techniques") or ())
    grounded = explanation is not None
    out = {
        "kind": candidate_kind,
        "update": update,
        "user_id": clean(facts["user_id"], 200),
        "incident_id": facts.get("incident_id"),
        "status": facts.get("status") or facts.get("risk_level"),
        "threat_types": threats,
        "attack": [technique_label(t) for t in techniques],
        "top_features": list(facts.get("top_features") or ()),
        "summary": clean(explanation["summary"])
        if grounded
        else (
            deterministic_summary(facts)
            if candidate_kind == "incident"
            else f"The user's risk reached {facts.get('risk_level')}."
        ),
        "recommended_action": clean(explanation["recommended_action"])
        if grounded
        else "",
        "explanation_source": "llm, grounded" if grounded else "deterministic",
        "links": {k: v for k, v in links.items() if v},
    }
    if risk is not None:
        out["risk"] = {
            "score": round(float(risk["risk_score"]), 1),
            "level": risk["risk_level"],
            "contributions": {
                t: round(float(v), 1)
                for t, v in sorted(
                    (risk["threat_contributions"] or {}).items(), key=lambda kv: -kv[1]
                )
            },
        }
    if candidate_kind == "incident":
        out["first_seen"] = facts["first_seen"].isoformat()
        out["last_seen"] = facts["last_seen"].isoformat()
        out["event_count"] = int(facts.get("event_count") or 0)
    return out


#: Operations alerts: a failed run or stale table (PagerDuty trigger), and its end (resolve).
OPERATIONS, OPERATIONS_RESOLVED = "operations", "operations_resolved"
#: Kinds that end what an earlier alert opened (PagerDuty resolve).
RESOLVING = ("resolve", OPERATIONS_RESOLVED)


def operations_record(
    kind: str,
    headline: str,
    status: str,
    summary: str,
    details: list[tuple[str, str]],
    links: dict,
    dedup_key: str,
) -> dict:
    """An operations alert's content; ``dedup_key`` names what it is about (a run, a
    table's staleness), so a resolve ends the same PagerDuty incident."""
    return {
        "kind": kind,
        "update": False,
        "title": clean(headline, 200),
        "status": status,
        "summary": clean(summary, 2000),
        "details": [[label, clean(text, 2000)] for label, text in details],
        "links": {k: v for k, v in links.items() if v},
        "dedup_key": dedup_key,
    }


def title(content: dict) -> str:
    """One line (a subject or header: no line breaks), what, who, how bad."""
    return " ".join(_title(content).split())


def _title(content: dict) -> str:
    if "title" in content:
        return content["title"]
    if content["kind"] == "resolve":
        return f"Resolved: incident {content['incident_id']} of {content['user_id']}"
    if content["kind"] == "risk":
        return f"Risk {content['status']} for user {content['user_id']}"
    what = ", ".join(content["threat_types"]) or "anomalous activity"
    prefix = "Escalated" if content["update"] else content["status"]
    return f"{prefix}: {what} by user {content['user_id']}"


def lines(content: dict) -> list[tuple[str, str]]:
    """(label, text) pairs every channel shows, in order."""
    out = [("Summary", content["summary"])]
    if "details" in content:
        return out + [tuple(d) for d in content["details"]]
    if content.get("risk"):
        r = content["risk"]
        drivers = ", ".join(f"{t} {v}" for t, v in r["contributions"].items())
        out.append(("User risk", f"{r['score']} ({r['level']}); {drivers}"))
    if content["attack"]:
        out.append(("ATT&CK", "; ".join(content["attack"])))
    if content["top_features"]:
        out.append(("Top contributions", ", ".join(content["top_features"])))
    if content.get("event_count"):
        span = f"{content['first_seen']} to {content['last_seen']}"
        out.append(("Events", f"{content['event_count']} from {span}"))
    if content["recommended_action"]:
        out.append(("Recommended action", content["recommended_action"]))
    out.append(("Explanation", content["explanation_source"]))
    return out
