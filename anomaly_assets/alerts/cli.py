"""anomaly-alerts: send a sample alert to a channel, snooze users or threat types, list
the snoozes and the latest alerts. No JVM: the snoozes and the outbox are read and written
with the deltalake package.

    anomaly-alerts test --channel soc-slack [--file alerts.yaml]
    anomaly-alerts snooze --user 'svc-*' --days 7 --reason "backup window"
    anomaly-alerts list [--limit 20]

``--file`` is a YAML file with an alerts section, or a stream's defs.yaml (its
``attributes.alerts``); by default the file ANOMALY_ALERTS_FILE names. ``--root`` and
``--prefix`` say where the stream's tables are (the lakehouse root, the stream's key
prefix joined by "/").
"""

import argparse
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta

from anomaly_assets import settings
from anomaly_assets.alerts.assets import ALERTS_FILE_ENV, SNOOZE_TABLE, load_alerts_file
from anomaly_assets.alerts.channels import send
from anomaly_assets.alerts.content import record
from anomaly_assets.alerts.settings import AlertsSpec, Snooze


def load_spec(path: str | None) -> AlertsSpec:
    path = path or os.environ.get(ALERTS_FILE_ENV)
    if not path:
        raise SystemExit(f"give --file, or set {ALERTS_FILE_ENV}")
    return load_alerts_file(path)


def table_path(root: str, prefix: str, table: str) -> str:
    return "/".join(p for p in (root.rstrip("/"), prefix.strip("/"), table) if p)


def sample_content(spec: AlertsSpec) -> dict:
    now = datetime.now(UTC)
    incident = {
        "incident_id": "test-" + uuid.uuid4().hex[:8],
        "user_id": "test-user",
        "first_seen": now - timedelta(minutes=5),
        "last_seen": now,
        "event_count": 3,
        "event_types": ["login"],
        "top_features": ["failed_logins_10m"],
        "status": "WARNING",
        "threat_types": ["credential_stuffing"],
        "attack_techniques": ["T1110.004"],
    }
    content = record(
        "incident", incident, None, None, {"Dagster": spec.dagster_url}, False
    )
    content["summary"] = "A test alert from anomaly-alerts: nothing happened."
    return content


def snoozes(root: str, prefix: str, now: datetime | None = None) -> list[Snooze]:
    """The snoozes recorded here that are still running (the alert step reads the same
    table with Spark)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    now = now or datetime.now(UTC)
    try:
        rows = DeltaTable(table_path(root, prefix, SNOOZE_TABLE)).to_pyarrow_table()
    except TableNotFoundError:
        return []
    out = []
    for r in rows.to_pylist():
        until = r["until"] if r["until"].tzinfo else r["until"].replace(tzinfo=UTC)
        if until > now:
            out.append(
                Snooze(
                    until=until,
                    users=r["users"] or [],
                    threat_types=r["threat_types"] or [],
                    reason=r["reason"] or "",
                )
            )
    return out


def add_snooze(root: str, prefix: str, snooze: Snooze) -> str:
    import pyarrow as pa

    from anomaly_assets.feedback.store import append_rows

    snooze_id = uuid.uuid4().hex[:12]
    table = pa.table(
        {
            "snooze_id": [snooze_id],
            "users": pa.array([snooze.users], pa.list_(pa.string())),
            "threat_types": pa.array([snooze.threat_types], pa.list_(pa.string())),
            "until": pa.array([snooze.until], pa.timestamp("us", tz="UTC")),
            "reason": [snooze.reason],
            "created_at": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
        }
    )
    append_rows(table_path(root, prefix, SNOOZE_TABLE), table.to_pylist(), table.schema)
    return snooze_id


def latest_alerts(root: str, prefix: str, limit: int) -> list[dict]:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        rows = DeltaTable(table_path(root, prefix, "alert_outbox")).to_pyarrow_table(
            columns=[
                "created_at",
                "channel",
                "kind",
                "user_id",
                "state",
                "status",
                "reason",
            ]
        )
    except TableNotFoundError:
        return []
    return sorted(rows.to_pylist(), key=lambda r: r["created_at"], reverse=True)[:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="anomaly-alerts", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--root", default=settings.LAKEHOUSE_ROOT, help="lakehouse root"
    )
    parser.add_argument("--prefix", default="", help="the stream's key prefix (a/b)")
    commands = parser.add_subparsers(dest="command", required=True)
    test = commands.add_parser("test", help="send a sample alert to one channel")
    test.add_argument("--channel", required=True)
    test.add_argument("--file", help="alerts YAML or a stream's defs.yaml")
    snooze = commands.add_parser(
        "snooze", help="quiet users or threat types for a time"
    )
    snooze.add_argument("--user", action="append", default=[], help="fnmatch pattern")
    snooze.add_argument("--threat", action="append", default=[], help="threat type")
    snooze.add_argument("--days", type=float, default=1.0)
    snooze.add_argument("--reason", default="")
    listing = commands.add_parser("list", help="running snoozes and the latest alerts")
    listing.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)

    if args.command == "test":
        spec = load_spec(args.file)
        channel = spec.channels.get(args.channel)
        if channel is None:
            print(f"no channel {args.channel!r}; channels: {sorted(spec.channels)}")
            return 2
        key = "test-" + uuid.uuid4().hex[:27]
        delivery = send(channel, key, sample_content(spec), None, None)
        print(
            f"{args.channel}: delivered ({delivery.ref})"
            if delivery.ok
            else f"{args.channel}: not delivered: {delivery.error}"
        )
        return 0 if delivery.ok else 1
    if args.command == "snooze":
        until = datetime.now(UTC) + timedelta(days=args.days)
        try:
            entry = Snooze(
                until=until,
                users=args.user,
                threat_types=args.threat,
                reason=args.reason,
            )
        except ValueError as exc:
            print(f"not snoozed: {exc}")
            return 2
        snooze_id = add_snooze(args.root, args.prefix, entry)
        print(f"snooze {snooze_id} until {until:%Y-%m-%d %H:%M} UTC")
        return 0
    for s in snoozes(args.root, args.prefix):
        print(
            f"snoozed until {s.until:%Y-%m-%d %H:%M}: users {s.users} threats "
            f"{s.threat_types} {s.reason}"
        )
    for a in latest_alerts(args.root, args.prefix, args.limit):
        print(
            f"{a['created_at']:%Y-%m-%d %H:%M} {a['channel']:<12} {a['kind']:<8} "
            f"{a['status']:<12} {a['user_id']} {a['state']} {a['reason'] or ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
