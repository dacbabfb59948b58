"""What the triage page shows, read from the stream's Delta tables with the deltalake
package and DuckDB (no JVM): each request opens the tables' latest versions as Arrow
datasets, so filters and columns are pushed down to the Parquet files."""

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa

from anomaly_assets.feedback import store as feedback
from anomaly_assets.gold.risk import INCIDENT_INPUTS, RiskWindow, user_risk

#: Tables the page reads, and the columns it needs of each.
COLUMNS = {
    "gold_user_incidents": [
        "incident_id",
        "user_id",
        "first_seen",
        "last_seen",
        "event_count",
        "event_ids",
        "top_features",
        "max_severity",
        "status",
        "threat_types",
        "attack_techniques",
        "attack_tactics",
    ],
    "gold_user_risk": [
        "user_id",
        "as_of",
        "risk_score",
        "risk_level",
        "threat_contributions",
    ],
    "gold_anomaly_predictions": [
        "event_id",
        "user_id",
        "event_type",
        "event_time",
        "country",
        "device_type",
        "anomaly_score",
        "severity_percentile",
        "is_anomaly",
        "status",
        "model_version",
        "feature_contributions",
        "top_features",
    ],
    "silver_events": ["event_id", "user_id", "event_time", "ip_address", "user_agent"],
    "gold_events_enriched": [
        "event_id",
        "enrichment_status",
        "summary",
        "risk_explanation",
        "recommended_action",
        "confidence",
        "trace_id",
        "enriched_at",
    ],
    feedback.TABLE: [f.name for f in feedback.SCHEMA],
}
#: Answers that close an incident; a reopen opens it again.
CLOSING = {"confirm": "confirmed", "dismiss": "dismissed"}
TIMELINE = timedelta(hours=1)


class Lake:
    """The stream's tables under ``root`` (``root/<prefix>/<table>``)."""

    def __init__(self, root: str, prefix: str = "") -> None:
        self.base = "/".join(p for p in (root.rstrip("/"), prefix.strip("/")) if p)

    def path(self, table: str) -> str:
        return f"{self.base}/{table}"

    def connect(self, *tables: str) -> duckdb.DuckDBPyConnection:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")  # times come back in UTC, as shown
        for table in tables:
            try:
                data = DeltaTable(self.path(table)).to_pyarrow_dataset()
            except TableNotFoundError:
                data = _empty(table)
            con.register(table, data)
        return con

    def queue(self, filters: dict, limit: int = 200) -> list[dict]:
        """Incidents by the user's risk, then severity; ``filters``: state (open,
        confirmed, dismissed, all), threat, tactic, user, since, until."""
        where, args = [], []
        if filters.get("threat"):
            where.append("list_contains(i.threat_types, ?)")
            args.append(filters["threat"])
        if filters.get("tactic"):
            where.append("list_contains(i.attack_tactics, ?)")
            args.append(filters["tactic"])
        if filters.get("user"):
            where.append("i.user_id = ?")
            args.append(filters["user"])
        if filters.get("since"):
            where.append("i.last_seen >= ?")
            args.append(filters["since"])
        if filters.get("until"):
            where.append("i.first_seen <= ?")
            args.append(filters["until"])
        state = filters.get("state") or "open"
        if state != "all":
            where.append("coalesce(a.state, 'open') = ?")
            args.append(state)
        sql = f"""
            WITH answers AS (
                SELECT incident_id,
                       CASE arg_max(action, recorded_at) WHEN 'confirm' THEN 'confirmed'
                            WHEN 'dismiss' THEN 'dismissed' ELSE 'open' END AS state
                FROM {feedback.TABLE}
                WHERE action IN ('confirm', 'dismiss', 'reopen')
                GROUP BY incident_id),
            assigned AS (
                SELECT incident_id, arg_max(assignee, recorded_at) AS assignee
                FROM {feedback.TABLE} WHERE action = 'assign' GROUP BY incident_id),
            last AS (
                SELECT incident_id, arg_max(feedback_id, recorded_at) AS last_answer
                FROM {feedback.TABLE} GROUP BY incident_id)
            SELECT i.incident_id, i.user_id, i.first_seen, i.last_seen, i.event_count,
                   i.status, i.max_severity, i.threat_types, i.attack_tactics,
                   r.risk_score, r.risk_level, coalesce(a.state, 'open') AS state,
                   s.assignee, l.last_answer
            FROM gold_user_incidents i
            LEFT JOIN gold_user_risk r USING (user_id)
            LEFT JOIN answers a USING (incident_id)
            LEFT JOIN assigned s USING (incident_id)
            LEFT JOIN last l USING (incident_id)
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY r.risk_score DESC NULLS LAST, i.max_severity DESC, i.incident_id
            LIMIT {int(limit)}"""
        with self.connect("gold_user_incidents", "gold_user_risk", feedback.TABLE) as c:
            return _rows(c.execute(sql, args))

    def answers(self) -> list[dict]:
        """Every closing answer (confirm, dismiss, reopen), oldest first."""
        with self.connect(feedback.TABLE) as c:
            return _rows(
                c.execute(
                    f"""SELECT * FROM {feedback.TABLE}
                        WHERE action IN ('confirm', 'dismiss', 'reopen')
                        ORDER BY recorded_at, feedback_id"""
                )
            )

    def incident(self, incident_id: str) -> dict | None:
        """The incident, its user's risk, events around it, explanations and answers."""
        tables = list(COLUMNS)
        with self.connect(*tables) as c:
            found = _rows(
                c.execute(
                    "SELECT * FROM gold_user_incidents WHERE incident_id = ?",
                    [incident_id],
                )
            )
            if not found:
                return None
            incident = found[0]
            user = incident["user_id"]
            lo = incident["first_seen"] - TIMELINE
            hi = incident["last_seen"] + TIMELINE
            incident["risk"] = next(
                iter(
                    _rows(
                        c.execute(
                            "SELECT * FROM gold_user_risk WHERE user_id = ?", [user]
                        )
                    )
                ),
                None,
            )
            incident["risk_history"] = risk_history(
                user,
                _rows(
                    c.execute(
                        f"""SELECT {", ".join(INCIDENT_INPUTS)}
                            FROM gold_user_incidents WHERE user_id = ?
                            ORDER BY last_seen, incident_id""",
                        [user],
                    )
                ),
            )
            incident["timeline"] = _rows(
                c.execute(
                    """SELECT g.*, s.ip_address, s.user_agent,
                              list_contains(?, g.event_id) AS in_incident
                       FROM gold_anomaly_predictions g
                       LEFT JOIN silver_events s
                         ON s.event_id = g.event_id AND s.user_id = g.user_id
                        AND s.event_time BETWEEN ? AND ?
                       WHERE g.user_id = ? AND g.event_time BETWEEN ? AND ?
                       ORDER BY g.event_time, g.event_id LIMIT 500""",
                    [incident["event_ids"], lo, hi, user, lo, hi],
                )
            )
            incident["explanations"] = _rows(
                c.execute(
                    """SELECT * FROM gold_events_enriched
                       WHERE list_contains(?, event_id) ORDER BY enriched_at DESC""",
                    [incident["event_ids"]],
                )
            )
            incident["answers"] = _rows(
                c.execute(
                    f"""SELECT * FROM {feedback.TABLE} WHERE incident_id = ?
                        ORDER BY recorded_at, feedback_id""",
                    [incident_id],
                )
            )
        return incident


def risk_history(user_id: str, incidents: list[dict], points: int = 20) -> list[dict]:
    """The user's risk score as of each of their latest ``points`` incidents (the score
    gold_user_risk would have held then; the default window)."""
    out = []
    for k in range(max(0, len(incidents) - points), len(incidents)):
        row = user_risk(user_id, incidents[: k + 1], RiskWindow())
        out.append({**row, "incident_id": incidents[k]["incident_id"]})
    return out


def latest_answer(incident: dict) -> str:
    """The id of the incident's latest answer ("" for none): what a form was based on."""
    return incident["answers"][-1]["feedback_id"] if incident["answers"] else ""


def contributions(incident: dict) -> list[tuple[str, float]]:
    """The incident's anomalous events' feature contributions, summed, largest first."""
    total: dict[str, float] = {}
    for e in incident["timeline"]:
        if e["in_incident"]:
            for name, value in (e["feature_contributions"] or {}).items():
                total[name] = total.get(name, 0.0) + float(value)
    return sorted(total.items(), key=lambda kv: -abs(kv[1]))[:10]


def _rows(result) -> list[dict]:
    names = [d[0] for d in result.description]
    return [dict(zip(names, values, strict=True)) for values in result.fetchall()]


_TIMES = {"event_time", "first_seen", "last_seen", "as_of", "enriched_at"}
_LISTS = {
    "event_ids",
    "top_features",
    "threat_types",
    "attack_techniques",
    "attack_tactics",
}
_MAPS = {"feature_contributions", "threat_contributions"}
_NUMBERS = {
    "anomaly_score",
    "severity_percentile",
    "max_severity",
    "risk_score",
    "confidence",
}


def _type(column: str) -> pa.DataType:
    if column in _TIMES:
        return pa.timestamp("us", tz="UTC")
    if column in _LISTS:
        return pa.list_(pa.string())
    if column in _MAPS:
        return pa.map_(pa.string(), pa.float64())
    if column in _NUMBERS:
        return pa.float64()
    return {"event_count": pa.int64(), "is_anomaly": pa.bool_()}.get(
        column, pa.string()
    )


def arrow_schema(table: str) -> pa.Schema:
    """The columns the page reads of ``table``, with their types."""
    if table == feedback.TABLE:
        return feedback.SCHEMA
    return pa.schema([(c, _type(c)) for c in COLUMNS[table]])


def _empty(table: str) -> pa.Table:
    """A table not written yet (no enrichment, no answer yet) as an empty one."""
    return arrow_schema(table).empty_table()


def parse_time(text: str | None) -> datetime | None:
    """A filter's time (a datetime-local field: no zone, read as UTC); None for none or
    for text that is not a time."""
    try:
        t = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t
