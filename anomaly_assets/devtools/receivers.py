"""Local alert receivers for tests and demos: one HTTP server on 127.0.0.1 that speaks the
parts of Slack's Web API and incoming webhooks, PagerDuty's Events API v2 and a signed JSON
webhook that the alerts use, with their answers and errors; and an SMTP server (aiosmtpd)
that requires STARTTLS. Both use a self-signed certificate for 127.0.0.1.

Each endpoint records what it received and can be told to fail the next requests the way
the real service does (``fail_next``): Slack's 429 with Retry-After and 400
``invalid_blocks``, PagerDuty's 400 invalid event and 429, a webhook's 5xx or a hang past
the client's timeout (Slack and the webhook take the message first, so a hang is a
delivery the sender never hears of). ``stop`` and ``start`` take it down and up on the same port.
"""

import hashlib
import hmac
import json
import secrets
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from anomaly_assets.devtools.services import free_port

#: Block Kit limits the receiver enforces, as Slack does (invalid_blocks beyond them).
HEADER_MAX, TEXT_MAX, FIELDS_MAX, FIELD_TEXT_MAX, BLOCKS_MAX = 150, 3000, 10, 2000, 50
PD_SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class Fault:
    status: int
    body: dict | str
    headers: dict = field(default_factory=dict)
    hang_s: float = 0.0


def _valid_blocks(blocks) -> bool:
    if not isinstance(blocks, list) or len(blocks) > BLOCKS_MAX:
        return False
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            text = block.get("text", {})
            if (
                text.get("type") != "plain_text"
                or len(text.get("text", "")) > HEADER_MAX
            ):
                return False
        elif kind == "section":
            fields = block.get("fields", [])
            if len(fields) > FIELDS_MAX or not (fields or block.get("text")):
                return False
            for f in fields:
                if f.get("type") not in ("plain_text", "mrkdwn") or not f.get("text"):
                    return False
                if len(f["text"]) > FIELD_TEXT_MAX:
                    return False
        elif kind == "actions":
            for element in block.get("elements", []):
                if not str(element.get("url", "")).startswith(("http://", "https://")):
                    return False
        else:
            return False
    return True


class Receivers:
    """The HTTP receivers. Credentials they accept: ``slack_token``, the webhook path
    ``/slack/webhook/<slack_hook>``, ``pd_routing_key`` (32 characters, as PagerDuty's),
    and ``webhook_secret`` for signatures."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.port, self.tls_port = port or free_port(), free_port()
        #: PagerDuty's client speaks only HTTPS: the receivers also listen with TLS, on a
        #: self-signed certificate (trusted through ANOMALY_ALERTS_CA_FILE).
        self.cert, self.key = self_signed_cert(folder, "local-receivers")
        # credentials made up per instance: the receivers accept only these
        self.slack_token = "xoxb-" + secrets.token_hex(12)
        self.slack_hook = f"T000/B000/{secrets.token_hex(8)}"
        self.pd_routing_key = secrets.token_hex(16)  # 32 characters, as PagerDuty's
        self.webhook_secret = secrets.token_hex(16)
        self.lock = threading.Lock()
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self.slack_messages: list[dict] = []
        self.slack_hook_messages: list[dict] = []
        self.pd_events: list[dict] = []
        self.pd_incidents: dict[str, str] = {}  # dedup_key -> triggered / resolved
        self.webhook_requests: list[dict] = []
        self.rejected: list[tuple[str, int, str]] = []
        self._servers = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_base(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def fail_next(self, endpoint: str, fault: Fault, times: int = 1) -> None:
        """``endpoint``: slack, slack_hook, pagerduty or webhook."""
        with self.lock:
            self.faults[endpoint] += [fault] * times

    def _fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            return self.faults[endpoint].pop(0) if self.faults[endpoint] else None

    def start(self) -> "Receivers":
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, headers = receivers.handle(
                    self.path, dict(self.headers), body
                )
                data = payload if isinstance(payload, str) else json.dumps(payload)
                self.send_response(status)
                self.send_header(
                    "Content-Type",
                    "text/plain" if isinstance(payload, str) else "application/json",
                )
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data.encode())))
                self.end_headers()
                self.wfile.write(data.encode())

        plain = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        tls = ThreadingHTTPServer(("127.0.0.1", self.tls_port), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        self._servers = [plain, tls]
        for server in self._servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- dispatch -----------------------------------------------------------------------

    def handle(self, path: str, headers: dict, body: bytes):
        route = path.split("?", 1)[0]
        if route.startswith("/api/"):
            return self._slack_api(route[5:], headers, body)
        if route.startswith("/slack/webhook/"):
            return self._slack_hook(route[len("/slack/webhook/") :], body)
        if route == "/v2/enqueue":
            return self._pagerduty(body)
        if route == "/hook":
            return self._webhook(headers, body)
        return 404, "not found", {}

    def _reject(self, endpoint: str, fault: Fault):
        if fault.hang_s:
            time.sleep(fault.hang_s)
        self.rejected.append((endpoint, fault.status, json.dumps(fault.body)))
        return fault.status, fault.body, fault.headers

    # -- Slack Web API --------------------------------------------------------------------

    def _slack_api(self, method: str, headers: dict, body: bytes):
        auth = headers.get("Authorization", "")
        if auth != f"Bearer {self.slack_token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        ctype = headers.get("Content-Type", "")
        if "json" in ctype:
            args = json.loads(body or b"{}")
        else:
            from urllib.parse import parse_qsl

            args = dict(parse_qsl(body.decode()))
        if method == "chat.postMessage":
            fault = self._fault("slack")
            if fault and not fault.hang_s:
                return self._reject("slack", fault)
            blocks = args.get("blocks")
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            if blocks is not None and not _valid_blocks(blocks):
                return 200, {"ok": False, "error": "invalid_blocks"}, {}
            if not args.get("channel"):
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            metadata = args.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            with self.lock:
                ts = f"{time.time():.6f}"
                while any(m["ts"] == ts for m in self.slack_messages):
                    ts = f"{float(ts) + 0.000001:.6f}"
                message = {
                    "ts": ts,
                    "channel": args["channel"],
                    "text": args.get("text"),
                    "blocks": blocks,
                    "thread_ts": args.get("thread_ts"),
                    "metadata": metadata,
                }
                self.slack_messages.append(message)
            if fault:  # posted, but the answer never comes back in time
                time.sleep(fault.hang_s)
            return 200, {"ok": True, "channel": args["channel"], "ts": ts}, {}
        if method in ("conversations.history", "conversations.replies"):
            # history lists the channel's messages, not the replies in their threads;
            # replies lists one thread (ts: its parent)
            oldest = float(args.get("oldest") or 0)
            thread = args.get("ts") if method == "conversations.replies" else None
            with self.lock:
                found = [
                    m
                    for m in self.slack_messages
                    if m["channel"] == args.get("channel")
                    and float(m["ts"]) > oldest
                    and (
                        m["thread_ts"] == thread or m["ts"] == thread
                        if thread
                        else not m["thread_ts"]
                    )
                ]
            return 200, {"ok": True, "messages": found[::-1], "has_more": False}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def _slack_hook(self, hook: str, body: bytes):
        if hook != self.slack_hook:
            return 404, "no_service", {}
        if fault := self._fault("slack_hook"):
            return self._reject("slack_hook", fault)
        data = json.loads(body)
        if "blocks" in data and not _valid_blocks(data["blocks"]):
            return 400, "invalid_blocks", {}
        if not (data.get("text") or data.get("blocks")):
            return 400, "no_text", {}
        with self.lock:
            self.slack_hook_messages.append(data)
        return 200, "ok", {}

    # -- PagerDuty Events API v2 ------------------------------------------------------------

    def _pagerduty(self, body: bytes):
        if fault := self._fault("pagerduty"):
            return self._reject("pagerduty", fault)
        try:
            event = json.loads(body)
        except ValueError:
            return (
                400,
                {"status": "invalid event", "message": "Event object is invalid"},
                {},
            )
        errors = []
        if event.get("routing_key") != self.pd_routing_key:
            errors.append("'routing_key' is invalid")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        if action == "trigger":
            payload = event.get("payload") or {}
            for name in ("summary", "source", "severity"):
                if not payload.get(name):
                    errors.append(f"'payload.{name}' is missing or blank")
            if payload.get("severity") not in PD_SEVERITIES:
                errors.append("'payload.severity' is invalid")
            if len(payload.get("summary", "")) > 1024:
                errors.append("'payload.summary' is too long")
        elif not event.get("dedup_key"):
            errors.append("'dedup_key' is missing")
        if errors:
            return (
                400,
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": errors,
                },
                {},
            )
        key = event.get("dedup_key") or hashlib.sha256(body).hexdigest()[:32]
        with self.lock:
            self.pd_events.append(event)
            self.pd_incidents[key] = "triggered" if action == "trigger" else "resolved"
        return (
            202,
            {"status": "success", "message": "Event processed", "dedup_key": key},
            {},
        )

    # -- signed JSON webhook ----------------------------------------------------------------

    def _webhook(self, headers: dict, body: bytes):
        timestamp = headers.get("X-Anomaly-Timestamp", "")
        mac = hmac.new(
            self.webhook_secret.encode(), timestamp.encode() + b"." + body, "sha256"
        )
        if not hmac.compare_digest(
            headers.get("X-Anomaly-Signature", ""), "v1=" + mac.hexdigest()
        ):
            return 401, {"error": "bad signature"}, {}
        if abs(time.time() - float(timestamp or 0)) > 300:
            return 401, {"error": "stale timestamp"}, {}
        with (
            self.lock
        ):  # recorded before any fault: a hang is a delivery nobody confirmed
            self.webhook_requests.append(
                {"key": headers.get("Idempotency-Key"), "body": json.loads(body)}
            )
        if fault := self._fault("webhook"):
            return self._reject("webhook", fault)
        return 200, {"received": True}, {}

    def webhook_keys(self) -> list[str]:
        return [r["key"] for r in self.webhook_requests]


# -- SMTP with STARTTLS -----------------------------------------------------------------------


def self_signed_cert(
    folder: Path, name: str, host: str = "127.0.0.1"
) -> tuple[Path, Path]:
    """(certificate, key) files of a self-signed certificate for ``host``, named ``name``
    (two of them trusted together need different names: a verifier finds an issuer by
    its name)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1 that refuses mail before STARTTLS; ``messages``
    holds each one received (parsed)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.cert, self.key = self_signed_cert(folder, "local-smtp")
        self.messages: list = []
        self._controller = None

    def start(self) -> "SmtpReceiver":
        from email import message_from_bytes, policy

        from aiosmtpd.controller import Controller

        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.messages.append(
                    message_from_bytes(envelope.content, policy=policy.default)
                )
                return "250 Message accepted for delivery"

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self._controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
