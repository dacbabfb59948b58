"""The triage page: a Starlette application with server-rendered Jinja2 templates.

Starlette rather than a larger framework: the page is a handful of server-rendered forms
(no API to document, no client code), and Starlette gives exactly the parts it needs:
routing, form parsing, signed-cookie sessions, and a test client. Jinja2 escapes every
value it renders, and the templates never mark event data as safe.

Security: users and roles (users.py); a session cookie signed with the page's secret,
HttpOnly and SameSite=Strict; a CSRF token per session in every form, checked on every
POST; viewers read, analysts answer; every action, allowed or refused, goes to
triage_audit. Two analysts answering the same incident: each form carries the answer it
was based on, and an answer based on an older one is refused with the newer answers
shown and the analyst's own words kept in the form (409).
"""

import logging
import secrets
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route

from anomaly_assets.alerts.content import asset_url, trace_url
from anomaly_assets.feedback import patterns, precision, suppression
from anomaly_assets.feedback import store as feedback
from anomaly_assets.feedback.patterns import Learning
from anomaly_assets.feedback.precision import Tuning
from anomaly_assets.feedback.suppression import user_pattern
from anomaly_assets.silver.catalogue import THREAT_FEATURES
from anomaly_assets.triage import audit
from anomaly_assets.triage.data import Lake, contributions, latest_answer, parse_time
from anomaly_assets.triage.throttle import Throttle
from anomaly_assets.triage.users import User, load_users, verify_password

log = logging.getLogger(__name__)
SESSION_HOURS = 8
#: Incidents the queue shows at once (narrow it with the filters).
LIMIT = 200
#: No script at all, styles inline, forms to this site only, never framed.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SecurityHeaders:
    """HEADERS on every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        async def with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


class TriageConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    root: str = Field(description="The lakehouse root.")
    prefix: str = Field(default="", description="The stream's key prefix (a/b).")
    users_file: str
    secret_key: str = Field(min_length=32, description="Signs the session cookies.")
    proxy_user_header: str | None = Field(
        default=None,
        description="Behind a trusted reverse proxy that authenticates: the header "
        "naming the user (roles still from the users file). Never expose the page "
        "directly with this set.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Addresses whose proxy_user_header is believed.",
    )
    secure_cookies: bool = Field(default=False, description="Cookies over HTTPS only.")
    dagster_url: str = "http://127.0.0.1:3000"
    mlflow_url: str = "http://127.0.0.1:5000"
    dismiss_days: int = Field(default=7, ge=1, le=90)
    tuning: Tuning = Field(
        default_factory=Tuning,
        description="The stream's alerts.tuning (precision page).",
    )
    learning: Learning = Field(
        default_factory=Learning,
        description="The stream's alerts.learning (precision page).",
    )


class Answer(BaseModel):
    """A submitted answer form, as fields of the analyst_feedback row it becomes."""

    action: str = Field(pattern="^(confirm|dismiss|snooze|assign|comment|reopen)$")
    threat_type: str = ""
    reason: str = Field(default="", max_length=2000)
    comment: str = Field(default="", max_length=5000)
    assignee: str = ""
    days: int = Field(default=7, ge=1, le=90)
    based_on: str = ""


def create_app(config: TriageConfig) -> Starlette:
    lake = Lake(config.root, config.prefix)
    users = load_users(config.users_file)
    env = Environment(
        loader=PackageLoader("anomaly_assets.triage", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    answering = threading.Lock()  # one answer checked and appended at a time
    # five wrong passwords per name or address in five minutes, then 429; refusals beyond
    # 30 a minute from one address are logged, not written to the audit table
    guesses = Throttle(5, 300)
    refusals = Throttle(30, 60)
    feedback_path = lake.path(feedback.TABLE)
    audit_path = lake.path(audit.TABLE)

    def who(request: Request) -> tuple[str, User] | None:
        if config.proxy_user_header:
            client = request.client.host if request.client else ""
            trusted = client in config.trusted_proxies
            name = request.headers.get(config.proxy_user_header) if trusted else None
        else:
            name = request.session.get("user")
        user = users.get(name) if name else None
        return (name, user) if user else None

    def csrf_token(request: Request) -> str:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(32)
        return request.session["csrf"]

    def page(request, template: str, status: int = 200, **context) -> HTMLResponse:
        me = who(request)
        html = env.get_template(template).render(
            me=me[0] if me else None,
            role=me[1].role if me else None,
            csrf=csrf_token(request),
            threat_types=sorted(THREAT_FEATURES),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def note(request, action, target, outcome, detail="", claimed=None):
        """Audit one action; ``claimed``: the name a refused login gave."""
        me = who(request)
        client = request.client.host if request.client else ""
        if outcome != "ok" and not refusals.hit(client):
            log.warning("not audited (flood from %s): %s %s", client, action, outcome)
            return
        audit.record(
            audit_path,
            me[0] if me else claimed,
            me[1].role if me else None,
            action,
            target,
            outcome,
            detail,
            client,
        )

    async def checked_form(request: Request, action: str, target: str, role: str):
        """The POSTed form once the user, role and CSRF token check out; else the
        refusal (401, 403), audited."""
        form = await request.form()
        me = who(request)
        if me is None:
            note(request, action, target, "refused: not logged in")
            return None, PlainTextResponse("log in first", status_code=401)
        expected = request.session.get("csrf", "")
        if not expected or not secrets.compare_digest(
            str(form.get("csrf", "")), expected
        ):
            note(request, action, target, "refused: bad CSRF token")
            return None, PlainTextResponse("bad or missing CSRF token", status_code=403)
        if role == "analyst" and me[1].role != "analyst":
            note(request, action, target, "refused: viewer")
            return None, PlainTextResponse("analysts only", status_code=403)
        return form, None

    def login_first(request: Request):
        target = request.url.path + (
            f"?{request.url.query}" if request.url.query else ""
        )
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    async def login(request: Request):
        if request.method == "GET":
            return page(
                request, "login.html", next=_local(request.query_params.get("next"))
            )
        form = await request.form()
        expected = request.session.get("csrf", "")
        if not expected or not secrets.compare_digest(
            str(form.get("csrf", "")), expected
        ):
            note(request, "login", "", "refused: bad CSRF token")
            return PlainTextResponse("bad or missing CSRF token", status_code=403)
        name = str(form.get("username", ""))[:200]
        client = request.client.host if request.client else ""
        if guesses.over(f"user:{name}") or guesses.over(f"ip:{client}"):
            note(request, "login", "", "refused: too many attempts", claimed=name)
            return PlainTextResponse("too many attempts; wait", status_code=429)
        user = users.get(name)
        ok = await run_in_threadpool(  # scrypt: off the event loop
            verify_password,
            str(form.get("password", "")),
            user.password if user else None,
        )
        if not ok:
            guesses.hit(f"user:{name}")
            guesses.hit(f"ip:{client}")
            note(
                request,
                "login",
                "",
                "refused: wrong user or password",
                claimed=name[:200],
            )
            return page(
                request,
                "login.html",
                401,
                error="Wrong user or password.",
                next=_local(form.get("next")),
            )
        request.session.clear()  # a fresh session (and CSRF token) per login
        request.session.update({"user": name, "csrf": secrets.token_urlsafe(32)})
        note(request, "login", name, "ok")
        return RedirectResponse(_local(form.get("next")), status_code=303)

    async def logout(request: Request):
        _, refused = await checked_form(request, "logout", "", "viewer")
        if refused:
            return refused
        note(request, "logout", "", "ok")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    def queue(request: Request):
        if who(request) is None:
            return login_first(request)
        q = request.query_params
        filters = {k: q.get(k) or None for k in ("state", "threat", "tactic", "user")}
        filters["since"] = parse_time(q.get("since"))
        filters["until"] = parse_time(q.get("until"))
        rows = lake.queue(filters, LIMIT)
        return page(
            request, "queue.html", rows=rows, filters=q, done=q.get("done"), limit=LIMIT
        )

    def incident_page(
        request: Request, status: int = 200, keep_based_on: str | None = None, **extra
    ):
        incident_id = request.path_params["incident_id"]
        incident = lake.incident(incident_id)
        if incident is None:
            return PlainTextResponse("no such incident", status_code=404)
        return page(
            request,
            "incident.html",
            status,
            incident=incident,
            contributions=contributions(incident),
            based_on=latest_answer(incident)
            if keep_based_on is None
            else keep_based_on,
            default_days=config.dismiss_days,
            analysts=sorted(n for n, u in users.items() if u.role == "analyst"),
            links={
                "Dagster: gold_user_incidents": asset_url(
                    config.dagster_url,
                    tuple(p for p in config.prefix.split("/") if p)
                    + ("gold_user_incidents",),
                ),
                **{
                    f"MLflow trace {e['event_id'][:8]}": trace_url(
                        config.mlflow_url, e["trace_id"]
                    )
                    for e in incident["explanations"]
                    if e["trace_id"]
                },
            },
            **extra,
        )

    def incident(request: Request):
        if who(request) is None:
            return login_first(request)
        return incident_page(request)

    async def answer(request: Request):
        incident_id = request.path_params["incident_id"]
        form, refused = await checked_form(request, "answer", incident_id, "analyst")
        if refused:
            return refused
        # Delta reads and commits in a worker thread: the event loop stays free, and the
        # lock orders answers across the threads
        return await run_in_threadpool(answer_now, request, incident_id, dict(form))

    def answer_now(request: Request, incident_id: str, form: dict):
        based_on = str(form.get("based_on", ""))
        with answering:
            current = lake.incident(incident_id)
            if current is None:
                note(request, "answer", incident_id, "refused: no such incident")
                return PlainTextResponse("no such incident", status_code=404)
            if latest_answer(current) != based_on:
                note(
                    request,
                    "answer",
                    incident_id,
                    "refused: conflict",
                    form.get("action", ""),
                )
                return incident_page(request, 409, conflict=True, draft=form)
            try:
                submitted = Answer.model_validate(
                    {k: v for k, v in form.items() if k in Answer.model_fields}
                )
                row = _feedback_row(who(request), current, submitted, users)
            except (ValidationError, ValueError) as exc:
                why = (
                    _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
                )
                note(request, "answer", incident_id, "refused: invalid", why)
                return incident_page(
                    request, 422, keep_based_on=based_on, error=why, draft=form
                )
            if submitted.action == "snooze":
                _snooze(lake, row)  # first: an answer is never recorded without it
            feedback.append(feedback_path, [row])
        note(request, "answer", incident_id, "ok", submitted.action)
        return RedirectResponse(f"/incidents/{quote(incident_id)}", status_code=303)

    async def bulk(request: Request):
        form, refused = await checked_form(request, "bulk", "", "analyst")
        if refused:
            return refused
        picked = [str(v) for v in form.getlist("incident_id")]
        return await run_in_threadpool(bulk_now, request, picked, dict(form))

    def bulk_now(request: Request, picked: list[str], form: dict):
        """Each ticked incident's answer, unless it was answered since the queue was
        shown (its box carries the answer it was based on): those are skipped, said."""
        action = str(form.get("action", ""))
        if action not in ("confirm", "dismiss", "assign") or not picked:
            note(request, "bulk", "", "refused: invalid", action)
            return PlainTextResponse("choose incidents and an action", status_code=422)
        me, rows, applied, skipped = who(request), [], [], []
        with answering:
            for value in picked:
                incident_id, _, based_on = value.rpartition("|")
                current = lake.incident(incident_id)
                if current is None or latest_answer(current) != based_on:
                    skipped.append(incident_id)
                    continue
                try:
                    submitted = Answer(
                        action=action,
                        threat_type=str(form.get("threat_type", "")),
                        reason=str(form.get("reason", "")),
                        assignee=str(form.get("assignee", "")),
                        days=config.dismiss_days,
                        based_on=based_on,
                    )
                    rows.append(_feedback_row(me, current, submitted, users))
                except (ValidationError, ValueError) as exc:
                    why = (
                        _first_error(exc)
                        if isinstance(exc, ValidationError)
                        else str(exc)
                    )
                    note(request, "bulk", incident_id, "refused: invalid", why)
                    return PlainTextResponse(why, status_code=422)
                applied.append(incident_id)
            if rows:
                feedback.append(feedback_path, rows)
        note(
            request,
            "bulk",
            ",".join(applied)[:2000],
            "ok",
            f"{action}; skipped, answered meanwhile: {skipped}"[:2000],
        )
        done = f"{action}: {len(applied)} applied, {len(skipped)} skipped (answered meanwhile)"
        return RedirectResponse("/?" + urlencode({"done": done}), status_code=303)

    def precision_page(request: Request):
        if who(request) is None:
            return login_first(request)
        answers, now = lake.answers(), datetime.now(UTC)
        return page(
            request,
            "precision.html",
            rows=precision.from_answers(answers, now, config.tuning),
            tuning=config.tuning,
            patterns=patterns.learn(answers, now, config.learning),
            learning=config.learning,
            set_aside=suppression.set_aside(answers, now),
            to_review=suppression.confirmations_to_review(answers),
        )

    def health(request: Request):
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", queue),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/incidents/{incident_id:path}/answer", answer, methods=["POST"]),
            Route("/incidents/{incident_id:path}", incident),
            Route("/bulk", bulk, methods=["POST"]),
            Route("/precision", precision_page),
            Route("/healthz", health),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=config.secret_key,
                session_cookie="triage_session",
                max_age=SESSION_HOURS * 3600,
                same_site="strict",
                https_only=config.secure_cookies,
            ),
            Middleware(SecurityHeaders),
        ],
    )


def _local(target) -> str:
    """A redirect target on this site only (no //host or scheme)."""
    target = str(target or "/")
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    return f"{'.'.join(map(str, e['loc']))}: {e['msg']}"


def _feedback_row(me, incident: dict, a: Answer, users) -> feedback.Feedback:
    name, user = me
    until = None
    if a.action == "confirm" and a.threat_type not in THREAT_FEATURES:
        raise ValueError("confirm names the threat type")
    if a.action == "dismiss":
        if not a.reason.strip():
            raise ValueError("a dismissal says why")
        until = datetime.now(UTC) + timedelta(days=a.days)
    if a.action == "snooze":
        until = datetime.now(UTC) + timedelta(days=a.days)
    if a.action == "assign" and a.assignee not in users:
        raise ValueError("assign to a known user")
    if a.action == "comment" and not a.comment.strip():
        raise ValueError("a comment says something")
    versions = {e["model_version"] for e in incident["timeline"] if e["in_incident"]}
    return feedback.Feedback(
        analyst=name,
        role=user.role,
        action=a.action,
        incident_id=incident["incident_id"],
        user_id=incident["user_id"],
        threat_type=a.threat_type or None,
        threat_types=list(incident["threat_types"] or ()),
        status=incident["status"],
        reason=a.reason,
        comment=a.comment,
        assignee=a.assignee or None,
        until=until,
        model_version=",".join(sorted(v for v in versions if v)) or None,
        max_severity=incident["max_severity"],
        event_ids=list(incident["event_ids"]),
        based_on=a.based_on or None,
        top_features=list(incident["top_features"] or ()),
    )


def _snooze(lake: Lake, row: feedback.Feedback) -> None:
    """A snooze from the page is the alerts' own snooze (alert_snoozes), for the user and
    the incident's threat types."""
    from anomaly_assets.alerts.cli import add_snooze
    from anomaly_assets.alerts.settings import Snooze

    add_snooze(
        lake.base,
        "",
        Snooze(
            until=row.until,
            users=[user_pattern(row.user_id)],
            threat_types=[t for t in row.threat_types if t in THREAT_FEATURES],
            reason=f"snoozed on the triage page by {row.analyst}: {row.reason}".strip(),
        ),
    )
