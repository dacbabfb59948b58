"""gold_user_risk: one risk score per user, from the user's incidents.

The unit is the incident, not the event: a 40-event bot burst is one piece of evidence.
Each incident in the window earns points by its status (CRITICAL 100, WARNING 50), halved
for every ``half_life_days`` it lies before the user's latest incident. The points, highest
first, are summed with the weights of a p-series, 1 / k^1.5 for the k-th (Elastic's entity
risk score does the same over alerts): one strong incident counts fully, each further one
less, so a user with many incidents rises without a ceiling being hit by volume alone. The
sum is divided by zeta(1.5), the series' limit, so the score stays below 100:

    score = 100 / zeta(1.5) * sum_k points_(k) / 100 / k^1.5

The window is ``window_days`` back from the user's latest incident, and the score is as of
that incident (``as_of``): a pure function of the user's incidents, so it is the same
however the events were cut into batches, and a batch recomputes only the users whose
incidents it changed. Each incident's term is split evenly among its threat types
("unclassified" when it has none), so ``threat_contributions`` adds up to the score.

Levels (``LEVELS``): one WARNING incident is low (19), one CRITICAL moderate (38), two
CRITICAL the same day high (52; a week apart, 45), seven CRITICAL of one day critical (72).
"""

from dataclasses import dataclass
from datetime import UTC

#: Riemann zeta(1.5): the sum of 1 / k^1.5 over every k, the score's normaliser.
ZETA = 2.612375348685488
P = 1.5
POINTS = {"CRITICAL": 100.0, "WARNING": 50.0}
#: A risk level from this score up, highest first; below the last: "none".
LEVELS = (("critical", 70.0), ("high", 50.0), ("moderate", 35.0), ("low", 15.0))
LEVEL_ORDER = ("none", *reversed([name for name, _ in LEVELS]))
UNCLASSIFIED = "unclassified"
#: Incidents named in a user's row: the strongest terms.
TOP_INCIDENTS = 10

RISK_SCHEMA = (
    "user_id string, as_of timestamp, risk_score double, risk_level string, "
    "incident_count int, top_incident_ids array<string>, "
    "threat_contributions map<string,double>, attack_techniques array<string>, "
    "window_days double, half_life_days double"
)
RISK_COLUMNS = tuple(c.split()[0] for c in RISK_SCHEMA.split(", "))
#: The incident columns the score reads.
INCIDENT_INPUTS = (
    "incident_id",
    "user_id",
    "last_seen",
    "status",
    "threat_types",
    "attack_techniques",
)


@dataclass(frozen=True)
class RiskWindow:
    window_days: float = 30.0
    half_life_days: float = 7.0


def level_of(score: float) -> str:
    for name, lowest in LEVELS:
        if score >= lowest:
            return name
    return "none"


def _utc(t):
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def user_risk(user_id: str, incidents: list[dict], window: RiskWindow) -> dict:
    """The risk row of one user from their incidents (dicts with INCIDENT_INPUTS)."""
    as_of = max(_utc(i["last_seen"]) for i in incidents)
    terms = []
    for i in incidents:
        age_days = (as_of - _utc(i["last_seen"])).total_seconds() / 86400
        if age_days >= window.window_days:
            continue
        points = POINTS.get(i["status"], 0.0) * 0.5 ** (
            age_days / window.half_life_days
        )
        terms.append((points, _utc(i["last_seen"]), i))
    # strongest first; ties: the newer, then by id, so a recompute sums in the same order
    terms.sort(key=lambda t: (-t[0], -t[1].timestamp(), t[2]["incident_id"]))
    score, by_threat, ids, techniques = 0.0, {}, [], set()
    for k, (points, _, incident) in enumerate(terms, start=1):
        term = points / k**P / ZETA
        score += term
        threats = list(incident["threat_types"] or ()) or [UNCLASSIFIED]
        for threat in threats:
            by_threat[threat] = by_threat.get(threat, 0.0) + term / len(threats)
        ids.append(incident["incident_id"])
        techniques.update(incident["attack_techniques"] or ())
    return {
        "user_id": user_id,
        "as_of": as_of,
        "risk_score": score,
        "risk_level": level_of(score),
        "incident_count": len(terms),
        "top_incident_ids": ids[:TOP_INCIDENTS],
        "threat_contributions": by_threat,
        "attack_techniques": sorted(techniques),
        "window_days": float(window.window_days),
        "half_life_days": float(window.half_life_days),
    }


def risk_rows(incidents: list[dict], window: RiskWindow) -> list[dict]:
    """A risk row per user of ``incidents`` (every incident of those users)."""
    by_user: dict[str, list[dict]] = {}
    for i in incidents:
        by_user.setdefault(i["user_id"], []).append(i)
    return [user_risk(u, rows, window) for u, rows in sorted(by_user.items())]


#: Rounding the contributions' sum may differ from the score by.
TOLERANCE = 1e-9


def risk_figures(rows: list[dict]) -> dict:
    """What is wrong with risk rows, counted: a score outside [0, 100), a level that is
    not the score's, threat contributions that do not add up to the score, no incident."""

    def wrong(test) -> int:
        return sum(1 for r in rows if test(r))

    return {
        "rows_checked": len(rows),
        "score_out_of_range": wrong(lambda r: not 0 <= r["risk_score"] < 100),
        "level_not_the_scores": wrong(
            lambda r: r["risk_level"] != level_of(r["risk_score"])
        ),
        "contributions_not_the_score": wrong(
            lambda r: (
                abs(sum((r["threat_contributions"] or {}).values()) - r["risk_score"])
                > TOLERANCE
            )
        ),
        "rows_without_incidents": wrong(lambda r: r["incident_count"] < 1),
    }
