"""Sending one alert to one channel, through each API's maintained client, and reading its
answer as delivered, worth retrying, or failed for good.

Receivers get the alert's idempotency key wherever their API takes one: PagerDuty's
``dedup_key`` (the incident, so a resend updates the same PagerDuty incident), the webhook's
``Idempotency-Key`` header, Slack message metadata (``find_sent`` looks a message up by it
after a killed run) and the email's ``Message-ID``.
"""

import hmac
import html
import json
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage

import httpx

from anomaly_assets.alerts.content import RESOLVING, lines, title
from anomaly_assets.alerts.settings import (
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
    secret,
)

#: Slack message metadata type of this project's alerts.
SLACK_EVENT = "anomaly_alert"


@dataclass(frozen=True)
class Delivery:
    ok: bool
    retryable: bool = False
    error: str = ""
    #: what the receiver calls the message (Slack ts, PagerDuty dedup key, Message-ID)
    ref: str | None = None


class MissingSecret(RuntimeError):
    pass


def _secret(env: str | None) -> str:
    value = secret(env)
    if not value:
        raise MissingSecret(f"environment variable {env} is not set")
    return value


def _http_delivery(status: int, body: str, ref: str | None = None) -> Delivery:
    if 200 <= status < 300:
        return Delivery(True, ref=ref)
    retryable = status in (408, 425, 429) or status >= 500
    return Delivery(False, retryable, f"HTTP {status}: {body[:200]}")


# -- Slack ------------------------------------------------------------------------------


def slack_blocks(content: dict) -> list[dict]:
    """Block Kit: our labels in mrkdwn, every value as plain_text (no formatting, links
    or mentions are parsed from it)."""
    blocks = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": title(content)[:150]},
        }
    ]
    for label, text in lines(content):
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{label}*"},
                    {"type": "plain_text", "text": text[:1900] or "-"},
                ],
            }
        )
    links = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": name},
            "url": url,
        }
        for name, url in content["links"].items()
    ]
    if links:
        blocks.append({"type": "actions", "elements": links[:5]})
    return blocks


def slack_text(text: str) -> str:
    """``text`` for a message's top-level text, where Slack reads ``<...>`` as mentions
    and links: its control characters escaped as Slack asks (&amp; &lt; &gt;)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_error(exc) -> Delivery:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", 0) or 0
    error = ""
    if response is not None:
        data = response.data if isinstance(response.data, dict) else {}
        error = data.get("error") or str(response.data)[:200]
    retryable = status == 429 or status >= 500 or error in ("ratelimited",)
    return Delivery(False, retryable, f"HTTP {status}: {error}")


def send_slack(spec: SlackChannel, key: str, content: dict, thread: str | None):
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError
    from slack_sdk.webhook import WebhookClient

    text = slack_text(title(content))
    blocks = slack_blocks(content)
    if spec.webhook_url_env:
        client = WebhookClient(
            _secret(spec.webhook_url_env), timeout=int(spec.timeout_s)
        )
        response = client.send(text=text, blocks=blocks)
        if response.status_code == 400 and "invalid_blocks" in (response.body or ""):
            # the same words, no blocks
            response = client.send(text=slack_text(_plain(content)))
        return _http_delivery(response.status_code, response.body or "")
    client = WebClient(
        token=_secret(spec.token_env),
        base_url=spec.base_url,
        timeout=int(spec.timeout_s),
    )
    metadata = {"event_type": SLACK_EVENT, "event_payload": {"key": key}}

    def post(text: str, blocks=None):
        return client.chat_postMessage(
            channel=spec.channel,
            text=text,
            blocks=blocks,
            thread_ts=thread,
            metadata=metadata,
            mrkdwn=False,
            link_names=False,
        )

    try:
        try:
            response = post(text, blocks)
        except SlackApiError as exc:
            if (exc.response.data or {}).get("error") != "invalid_blocks":
                raise
            response = post(slack_text(_plain(content)))  # the same words, no blocks
    except SlackApiError as exc:
        return _slack_error(exc)
    except OSError as exc:
        return Delivery(False, True, f"{type(exc).__name__}: {exc}"[:200])
    return Delivery(True, ref=response["ts"])


def _plain(content: dict) -> str:
    return "\n".join([title(content), *(f"{k}: {v}" for k, v in lines(content))])


def find_sent_slack(
    spec: SlackChannel, key: str, since: float, thread: str | None = None
) -> str | None:
    """The ts of a message of ours carrying ``key`` posted since ``since`` (epoch s), in
    the channel or, for an update, in the ``thread`` it replies to; None when there is
    none (incoming webhooks cannot be asked)."""
    if not spec.token_env:
        return None
    from slack_sdk import WebClient

    client = WebClient(
        token=_secret(spec.token_env),
        base_url=spec.base_url,
        timeout=int(spec.timeout_s),
    )
    cursor = None
    while True:
        args = {
            "channel": spec.channel,
            "oldest": f"{since:.6f}",
            "include_all_metadata": True,
            "limit": 200,
            "cursor": cursor,
        }
        page = (
            client.conversations_replies(ts=thread, **args)
            if thread
            else client.conversations_history(**args)
        )
        for message in page["messages"]:
            meta = message.get("metadata") or {}
            if (
                meta.get("event_type") == SLACK_EVENT
                and (meta.get("event_payload") or {}).get("key") == key
            ):
                return message["ts"]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None


# -- a signed JSON webhook -------------------------------------------------------------------


def signature(secret_value: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret_value.encode(), timestamp.encode() + b"." + body, "sha256")
    return "v1=" + mac.hexdigest()


def send_webhook(spec: WebhookChannel, key: str, content: dict, parent: str | None):
    body = json.dumps(
        {"key": key, "update_of": parent, **content}, sort_keys=True
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "X-Anomaly-Timestamp": timestamp,
        "X-Anomaly-Signature": signature(_secret(spec.secret_env), timestamp, body),
    }
    try:
        response = httpx.post(
            spec.url,
            content=body,
            headers=headers,
            timeout=spec.timeout_s,
            verify=tls_context(),
        )
    except httpx.HTTPError as exc:
        return Delivery(False, True, f"{type(exc).__name__}: {exc}"[:200])
    return _http_delivery(response.status_code, response.text, key)


# -- PagerDuty Events API v2 ------------------------------------------------------------------

#: An incident's status or a risk level -> PagerDuty's severity.
PD_SEVERITY = {"critical": "critical", "high": "error", "warning": "warning"}


def send_pagerduty(spec: PagerDutyChannel, content: dict, resolve: bool):
    from pagerduty import EventsApiV2Client
    from pagerduty.errors import Error, HttpError

    base = spec.url.removesuffix("/v2/enqueue")
    client = EventsApiV2Client(
        _secret(spec.routing_key_env),
        base_url=base,
        verify=tls_context(),
        timeout=spec.timeout_s,
    )
    # One quick retry of a 429 or a network error in the call (the client's default
    # retries a 429 without limit); later ones are the outbox's, across runs.
    client.retry = {429: 1}
    client.max_network_attempts = 1
    client.sleep_timer = 1.0
    dedup_key = (
        content.get("dedup_key")
        or content["incident_id"]
        or f"risk-{content['user_id']}"
    )
    try:
        if resolve:
            ref = client.resolve(dedup_key)
        else:
            ref = client.trigger(
                summary=title(content)[:1024],
                source="anomaly_assets",
                dedup_key=dedup_key,
                severity=PD_SEVERITY.get(str(content["status"]).lower(), "warning"),
                custom_details=content,
                links=[{"href": u, "text": n} for n, u in content["links"].items()],
            )
    except HttpError as exc:
        return _http_delivery(exc.response.status_code, exc.response.text)
    except (Error, OSError) as exc:
        return Delivery(False, True, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        client.close()
    return Delivery(True, ref=ref)


# -- email ------------------------------------------------------------------------------------


def email_message(spec: EmailChannel, key: str, content: dict, parent: str | None):
    message = EmailMessage()
    message["Subject"] = title(content)[:200]
    message["From"] = spec.sender
    message["To"] = ", ".join(spec.to)
    domain = spec.sender.split("@", 1)[1]
    message["Message-ID"] = f"<{key}@{domain}>"
    if parent:  # an update threads under the first alert
        message["In-Reply-To"] = message["References"] = f"<{parent}@{domain}>"
    text = "\n".join(f"{label}: {value}" for label, value in lines(content))
    links = "\n".join(f"{name}: {url}" for name, url in content["links"].items())
    message.set_content(f"{text}\n\n{links}\n")
    rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in lines(content)
    )
    anchors = " ".join(
        f"<a href='{html.escape(url, quote=True)}'>{html.escape(name)}</a>"
        for name, url in content["links"].items()
    )
    message.add_alternative(
        f"<html><body><h3>{html.escape(title(content))}</h3><table>{rows}</table>"
        f"<p>{anchors}</p></body></html>",
        subtype="html",
    )
    return message


def send_email(spec: EmailChannel, key: str, content: dict, parent: str | None):
    message = email_message(spec, key, content, parent)
    try:
        with smtplib.SMTP(spec.host, spec.port, timeout=spec.timeout_s) as smtp:
            if spec.starttls:
                smtp.starttls(context=tls_context())
            if spec.username_env:
                smtp.login(_secret(spec.username_env), _secret(spec.password_env))
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        return Delivery(False, 400 <= exc.smtp_code < 500, f"SMTP {exc.smtp_code}")
    except (smtplib.SMTPException, OSError) as exc:
        return Delivery(False, True, f"{type(exc).__name__}: {exc}"[:200])
    return Delivery(True, ref=message["Message-ID"])


#: A private CA the alert receivers' certificates may come from (an internal SMTP relay or
#: proxy), trusted beside the system's.
CA_FILE_ENV = "ANOMALY_ALERTS_CA_FILE"


def tls_context() -> ssl.SSLContext:
    """The system's trust store, plus the file ANOMALY_ALERTS_CA_FILE names."""
    context = ssl.create_default_context()
    extra = secret(CA_FILE_ENV)
    if extra:
        context.load_verify_locations(extra)
    return context


def send(spec, key: str, content: dict, parent_ref: str | None, parent_key: str | None):
    """Send one alert; ``parent_ref`` is the receiver's name for the first alert of the
    incident (a Slack thread), ``parent_key`` its key."""
    try:
        if isinstance(spec, SlackChannel):
            return send_slack(spec, key, content, parent_ref)
        if isinstance(spec, WebhookChannel):
            return send_webhook(spec, key, content, parent_key)
        if isinstance(spec, PagerDutyChannel):
            return send_pagerduty(spec, content, content["kind"] in RESOLVING)
        return send_email(spec, key, content, parent_key)
    except MissingSecret as exc:  # an operator can still set it: retried, then failed
        return Delivery(False, True, str(exc))
