"""triage_audit: every action on the triage page, allowed or not (logins, answers, refused
requests), appended with the deltalake package like analyst_feedback."""

from datetime import UTC, datetime

import pyarrow as pa

from anomaly_assets.feedback.store import append_rows

TABLE = "triage_audit"
SCHEMA = pa.schema(
    [
        ("at", pa.timestamp("us", tz="UTC")),
        ("who", pa.string()),
        ("role", pa.string()),
        ("action", pa.string()),
        ("target", pa.string()),
        ("outcome", pa.string()),
        ("detail", pa.string()),
        ("client", pa.string()),
    ]
)


def record(path: str, who, role, action, target, outcome, detail="", client="") -> None:
    row = {
        "at": datetime.now(UTC),
        "who": who or "",
        "role": role or "",
        "action": action,
        "target": target or "",
        "outcome": outcome,
        "detail": detail[:2000],
        "client": client or "",
    }
    append_rows(path, [row], SCHEMA)
