"""anomaly-triage: the triage page, and the password hashes its users file holds.

    anomaly-triage serve [--host 127.0.0.1] [--port 8765] [--prefix payments]
    anomaly-triage hash-password        (reads the password from stdin)
    anomaly-triage init-local           (what `make dev` runs first)

``serve`` reads ANOMALY_TRIAGE_USERS (the users file), ANOMALY_TRIAGE_SECRET (32+
characters that sign the session cookies), optionally ANOMALY_TRIAGE_PROXY_HEADER, and
the lakehouse root from ANOMALY_LAKEHOUSE_ROOT like the pipeline. Without the first two it
uses the local ones ``init-local`` made under ANOMALY_LOCAL_DIR/triage/: one analyst,
``analyst``, whose random password it printed once.
"""

import argparse
import getpass
import os
import secrets
import sys

from anomaly_assets import settings
from anomaly_assets.triage.users import hash_password

LOCAL = settings.LOCAL_DIR / "triage"


def _private(path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read, from its first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def init_local() -> None:
    """A users file with one analyst and a session secret under LOCAL, unless there."""
    LOCAL.mkdir(parents=True, exist_ok=True)
    users, secret = LOCAL / "users.yaml", LOCAL / "secret"
    if not secret.exists():
        _private(secret, secrets.token_urlsafe(48))
    if not users.exists():
        password = secrets.token_urlsafe(12)
        _private(
            users,
            f"users:\n  analyst: {{role: analyst, password: '{hash_password(password)}'}}\n",
        )
        print(
            f"triage page: user 'analyst', password {password} (only shown now; "
            f"add users to {users})"
        )


def config_from_env(prefix: str, alerts_file: str | None = None):
    from anomaly_assets.triage.app import TriageConfig

    users = os.environ.get("ANOMALY_TRIAGE_USERS")
    secret = os.environ.get("ANOMALY_TRIAGE_SECRET")
    if not users and (LOCAL / "users.yaml").exists():
        users = str(LOCAL / "users.yaml")
    if not secret and (LOCAL / "secret").exists():
        secret = (LOCAL / "secret").read_text().strip()
    if not users or not secret:
        raise SystemExit(
            "set ANOMALY_TRIAGE_USERS (the users file) and ANOMALY_TRIAGE_SECRET (32+ "
            "random characters), or run `anomaly-triage init-local` (docs/triage.md)"
        )
    alerts_file = alerts_file or os.environ.get("ANOMALY_ALERTS_FILE")
    feedback_rules = {}
    if alerts_file:  # the stream's alerts section: its tuning and learning settings
        from anomaly_assets.alerts.assets import load_alerts_file

        spec = load_alerts_file(alerts_file)
        feedback_rules = {"tuning": spec.tuning, "learning": spec.learning}
    return TriageConfig(
        **feedback_rules,
        root=settings.LAKEHOUSE_ROOT,
        prefix=prefix,
        users_file=users,
        secret_key=secret,
        proxy_user_header=os.environ.get("ANOMALY_TRIAGE_PROXY_HEADER") or None,
        **(
            {"trusted_proxies": os.environ["ANOMALY_TRIAGE_TRUSTED_PROXIES"].split(",")}
            if os.environ.get("ANOMALY_TRIAGE_TRUSTED_PROXIES")
            else {}
        ),
        secure_cookies=os.environ.get("ANOMALY_TRIAGE_SECURE_COOKIES") == "1",
        dagster_url=os.environ.get(
            "ANOMALY_TRIAGE_DAGSTER_URL", "http://127.0.0.1:3000"
        ),
        mlflow_url=os.environ.get("ANOMALY_TRIAGE_MLFLOW_URL", "http://127.0.0.1:5000"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="anomaly-triage", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the triage page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--prefix", default="", help="the stream's key prefix (a/b)")
    serve.add_argument(
        "--alerts-file",
        help="the stream's defs.yaml or alerts YAML, for its tuning settings "
        "(default: ANOMALY_ALERTS_FILE)",
    )
    commands.add_parser("hash-password", help="a users-file hash of a password")
    commands.add_parser("init-local", help="a local users file and session secret")
    args = parser.parse_args(argv)
    if args.command == "init-local":
        init_local()
        return 0
    if args.command == "hash-password":
        password = (
            getpass.getpass("password: ")
            if sys.stdin.isatty()
            else sys.stdin.readline()
        ).rstrip("\n")
        if not password:
            print("no password given", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    import uvicorn

    from anomaly_assets.triage.app import create_app

    uvicorn.run(
        create_app(config_from_env(args.prefix, args.alerts_file)),
        host=args.host,
        port=args.port,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
