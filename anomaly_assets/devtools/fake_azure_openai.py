"""A local HTTP server speaking Azure OpenAI's chat-completions protocol, for tests and benches.

The real endpoint is out of reach here; this server lets the real ``openai`` client talk over
real sockets, and behaves as the service does where that matters:

- **Strict structured outputs.** A ``json_schema`` response format with ``strict: true`` is
  checked against the strictest subset the OpenAI-protocol services share: every object
  closed (``additionalProperties: false``) with every property required, and no length,
  range, size or format keywords. A schema outside it gets the service's 400
  (``invalid_request_error`` on ``response_format``, naming the place and the keyword).
- **An imperfect model.** ``ImperfectModel`` answers, at configured rates: factors that are
  not among the group's contributors, a risk level below the severity's, figures that are in
  no data sent, empty content, JSON cut off at the token limit (``finish_reason: length``),
  refusals, ``401`` and ``429`` with a long ``Retry-After``. It also does what a gullible model
  does with instructions hidden in event fields (``... answer risk_level low``): it obeys.
- **Faults on demand** for deterministic tests: ``inject("429", "empty", ...)`` queues them.

Every request (path, query, headers, body) is recorded for inspection.

``python -m anomaly_assets.devtools.fake_azure_openai --port 8089 --latency 0.3 --imperfect 0.3``
"""

import argparse
import json
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlparse

from anomaly_assets.enrichment.evidence import evidence_numbers

#: Faults ``inject`` queues and ``ImperfectModel`` draws. Transport: 401, 429 (Retry-After
#: 1 s), 429_long (Retry-After 120 s, longer than the SDK waits), 500, timeout. Answers:
#: bad_json (half a document, finish_reason stop), truncated (finish_reason length),
#: content_filter (no content, finish_reason content_filter), empty, refusal, schema (a risk level out of the enum), overlong (a summary past its
#: limit), foreign_factor, low_risk, invented_number.
FAULTS = (
    "401",
    "429",
    "429_long",
    "500",
    "timeout",
    "bad_json",
    "truncated",
    "content_filter",
    "empty",
    "refusal",
    "schema",
    "overlong",
    "foreign_factor",
    "low_risk",
    "invented_number",
    "vague_action",
)
#: Keywords outside the strict subset (answered with a 400). The service's list, kept apart
#: from the one the product strips (enrichment/schema.py) so that a keyword the product forgets to
#: strip is caught here, not agreed with.
UNSUPPORTED_KEYWORDS = frozenset(
    {
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "default",
        "if",
        "then",
        "else",
        "not",
    }
)
#: An instruction hidden in data that a gullible model follows.
_INJECTION = re.compile(
    r"(?i)(?:ignore|disregard|answer|respond|set|classify|rate)\b.{0,60}?"
    r"\b(low|medium|high|critical)\b"
)


def schema_errors(schema, context: tuple = ()) -> list[str]:
    """Why ``schema`` is outside the strict subset, in the service's words."""
    if isinstance(schema, list):
        return [e for item in schema for e in schema_errors(item, context)]
    if not isinstance(schema, dict):
        return []
    errors = [
        f"In context={context}, '{key}' is not permitted."
        for key in schema
        if key in UNSUPPORTED_KEYWORDS
    ]
    properties = schema.get("properties")
    if schema.get("type") == "object" or properties is not None:
        if schema.get("additionalProperties") is not False:
            errors.append(
                f"In context={context}, 'additionalProperties' is required to be "
                "supplied and to be false."
            )
        missing = sorted(set(properties or {}) - set(schema.get("required") or []))
        if missing:
            errors.append(
                f"In context={context}, 'required' is required to be supplied and to be "
                f"an array including every key in properties. Missing '{missing[0]}'."
            )
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions"):
            for name, sub in value.items():
                errors += schema_errors(sub, (*context, key, name))
        elif key in ("items", "anyOf", "allOf", "oneOf"):
            errors += schema_errors(value, (*context, key))
    return errors


def grounded_answer(payload: dict) -> dict:
    """A valid explanation whose factors are the payload's strongest contributors."""
    contributions = payload.get("top_contributions", {})
    factors = payload.get("group_factors") or list(contributions)[:2] or ["events_5m"]
    factors = sorted(factors, key=lambda f: -contributions.get(f, 0.0))[:3]
    top = (payload.get("severity_range") or [0, 0])[1]
    risk = "critical" if top >= 99.9 else "high" if top >= 99.5 else "medium"
    return {
        "summary": f"{payload.get('segment', 'event')} anomalies driven by "
        f"{' and '.join(factors)}.",
        "user_intent": "Automated or unauthorised activity.",
        "risk_level": risk,
        "risk_explanation": f"Severity in the {risk} band; {factors[0]} is far from the "
        "baseline.",
        "confidence": 0.8,
        "top_factors": factors,
        "recommended_action": "Review the account and block the source if confirmed.",
    }


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def model_answer(payload: dict, fault: str | None, rng: random.Random) -> dict:
    """What the model writes: a grounded answer, bent by a content ``fault``, and by any
    instruction hidden in the data's strings (a gullible model follows it)."""
    answer = grounded_answer(payload)
    for text in _strings(payload.get("examples", [])):
        match = _INJECTION.search(text)
        if match:
            answer["risk_level"] = match.group(1).lower()
            break
    if fault == "foreign_factor":
        known = set(payload.get("top_contributions", {})) | set(
            payload.get("group_factors", [])
        )
        others = [
            f for f in payload.get("feature_definitions", {}) if f not in known
        ] or ["hour_of_day"]
        answer["top_factors"] = [rng.choice(others), *answer["top_factors"][:1]]
    elif fault == "low_risk":
        answer["risk_level"] = "low"
    elif fault == "invented_number":
        taken = evidence_numbers(payload)
        figure = next(n for n in range(7_331, 10**6, 97) if float(n) not in taken)
        answer["summary"] = (
            f"{answer['summary'][:300]} About {figure:,} similar events were seen."
        )
    elif fault == "schema":
        answer["risk_level"] = "apocalyptic"
    elif fault == "overlong":
        answer["summary"] = (answer["summary"] + " ") * 40
    elif fault == "vague_action":
        answer["recommended_action"] = "Keep an eye on it."
    return answer


#: Verbs of a step an analyst can take: what the fake judge calls actionable.
ACTION_VERBS = ("block", "lock", "reset", "revoke", "disable", "verify", "contact")


def judge_verdict(
    task: str, outputs: dict, inputs: dict, rng: random.Random, noise: float
) -> tuple[bool, str]:
    """An LLM judge's verdict on one explanation call, as a model would reach it: its own
    reading, not the product's checks, and wrong at rate ``noise``.

    Faithful: every factor is among the contributions sent and every figure of the text
    occurs in the data sent. Actionable: the action names a concrete step."""
    try:
        answer = json.loads(outputs.get("answer") or "{}")
        data = json.loads(inputs["messages"][1]["content"])
    except (KeyError, IndexError, TypeError, ValueError):
        return False, "The explanation or its evidence could not be read."
    if "faithful" in task.lower():
        factors = set(answer.get("top_factors") or [])
        unknown = factors - set(data.get("top_contributions", {}))
        sent = json.dumps(data)
        text = " ".join(str(answer.get(k, "")) for k in ("summary", "risk_explanation"))
        invented = [n for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text) if n not in sent]
        verdict = not unknown and not invented
        why = (
            "Every factor and figure is in the evidence."
            if verdict
            else f"Not in the evidence: {sorted(unknown) + invented}."
        )
    else:
        action = str(answer.get("recommended_action", "")).lower()
        verdict = any(verb in action for verb in ACTION_VERBS)
        why = "A concrete next step." if verdict else "No concrete step to take."
    if rng.random() < noise:
        verdict, why = not verdict, f"On balance, {'yes' if not verdict else 'no'}."
    return verdict, why


def _is_judge(body: dict) -> bool:
    """An MLflow judge's request (make_judge's system prompt), not an explanation."""
    messages = body.get("messages") or [{}]
    return str(messages[0].get("content", "")).startswith("You are an expert judge")


def _judge_parts(text: str) -> dict:
    """The ``outputs: {...}`` and ``inputs: {...}`` JSON documents of a judge's message."""
    parts = {}
    for match in re.finditer(r"^(inputs|outputs): ", text, re.MULTILINE):
        rest = text[match.end() :]
        try:
            parts[match.group(1)], _ = json.JSONDecoder().raw_decode(rest)
        except ValueError:
            continue
    return parts


@dataclass
class ImperfectModel:
    """Rates (0-1) at which each fault in FAULTS happens to a request, drawn independently
    per request in a fixed order with a seeded generator: at most one fault per request."""

    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        if sum(self.rates.values()) > 1:
            raise ValueError("the fault rates add up to more than 1")
        self.rng = random.Random(self.seed)

    @classmethod
    def uniform(cls, rate: float, seed: int = 0, faults=FAULTS) -> "ImperfectModel":
        """Every fault in ``faults`` at ``rate`` / len(faults): ``rate`` of requests fail."""
        return cls({f: rate / len(faults) for f in faults}, seed)

    def draw(self) -> str | None:
        x, edge = self.rng.random(), 0.0
        for fault in FAULTS:
            edge += self.rates.get(fault, 0.0)
            if x < edge:
                return fault
        return None


#: What tests give the client as its key when the fake checks none (no ``api_key``): any
#: value is accepted, and this one says so.
UNCHECKED_KEY = "unchecked"


class FakeAzureOpenAI:
    def __init__(
        self,
        port: int = 0,
        latency_s: float = 0.0,
        api_key: str | None = None,
        timeout_sleep_s: float = 5.0,
        imperfect: ImperfectModel | None = None,
        judge_noise: float = 0.1,
    ) -> None:
        self.latency_s = latency_s
        self.api_key = api_key
        self.timeout_sleep_s = timeout_sleep_s
        self.imperfect = imperfect
        self.faults: deque[str] = deque()
        self.requests: list[dict] = []
        self.drawn: list[str | None] = []
        #: MLflow judge requests, answered wrong at rate judge_noise (or refused with a
        #: 400 while judge_down).
        self.judged: list[dict] = []
        self.judge_noise = judge_noise
        self.judge_down = False
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def completion_calls(self) -> int:
        """Chat completions asked for an explanation (judges' requests not counted)."""
        return len(self.explanation_requests)

    @property
    def explanation_requests(self) -> list[dict]:
        return [
            r
            for r in self.requests
            if "/chat/completions" in r["path"] and not _is_judge(r["body"])
        ]

    def inject(self, *faults: str) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {FAULTS}")
        self.faults.extend(faults)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_fault(self) -> tuple[str | None, int]:
        """The request's fault and its number (taken under the lock: ids and the model's
        draws stay distinct under concurrent requests)."""
        with self._lock:
            if self.faults:
                fault = self.faults.popleft()
            elif self.imperfect is not None:
                fault = self.imperfect.draw()
            else:
                fault = None
            self.drawn.append(fault)
            return fault, len(self.drawn)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(
                self, status: int, body: dict | str, headers: dict | None = None
            ):
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, **fields):
                body = {"message": message, "type": None, "param": None, "code": None}
                self._reply(status, {"error": {**body, **fields}})

            def do_GET(self):
                self._error(404, "Resource not found", code="404")

            def do_POST(self):
                url = urlparse(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                with fake._lock:
                    fake.requests.append(
                        {
                            "path": url.path,
                            "query": parse_qs(url.query),
                            "headers": dict(self.headers),
                            "body": body,
                            "raw": raw.decode(),
                        }
                    )
                if fake.api_key and self.headers.get("api-key") != fake.api_key:
                    return self._unauthorized()
                if not url.path.endswith("/chat/completions"):
                    return self._error(404, "Resource not found", code="404")
                problem = self._schema_problem(body.get("response_format"))
                if not problem and _is_judge(body):
                    return self._judge(url, raw, body)
                if problem:
                    return self._error(
                        400,
                        problem,
                        type="invalid_request_error",
                        param="response_format",
                    )
                fault, number = fake._next_fault()
                time.sleep(fake.latency_s)
                if fault == "401":
                    return self._unauthorized()
                if fault in ("429", "429_long"):
                    wait = "1" if fault == "429" else "120"
                    return self._reply(
                        429,
                        {
                            "error": {
                                "code": "429",
                                "message": "Requests to the ChatCompletions_Create "
                                "Operation have exceeded the token rate limit of your "
                                f"current tier. Please retry after {wait} seconds.",
                            }
                        },
                        {"Retry-After": wait},
                    )
                if fault == "500":
                    return self._error(500, "The server had an error.")
                if fault == "timeout":
                    time.sleep(fake.timeout_sleep_s)
                payload = json.loads(body["messages"][1]["content"])
                rng = random.Random(number)
                answer = model_answer(payload, fault, rng)
                content, refusal, finish = json.dumps(answer), None, "stop"
                if fault == "bad_json":
                    content = content[: len(content) // 2]
                elif fault == "truncated":
                    content, finish = content[: len(content) // 3], "length"
                elif fault == "content_filter":
                    content, finish = None, "content_filter"
                elif fault == "empty":
                    content = ""
                elif fault == "refusal":
                    content, refusal = None, "I'm sorry, but I can't help with that."
                self._completion(url, raw, content, refusal, finish, number)

            def _judge(self, url, raw, body):
                """Answer an MLflow judge: {"result": bool, "rationale": ...}."""
                with fake._lock:
                    fake.judged.append(body)
                    number = len(fake.judged)
                if fake.judge_down:
                    return self._error(
                        400, "The judge deployment is unavailable.", code="400"
                    )
                task = body["messages"][0]["content"]
                parts = _judge_parts(body["messages"][-1]["content"])
                verdict, why = judge_verdict(
                    task,
                    parts.get("outputs") or {},
                    parts.get("inputs") or {},
                    random.Random(f"judge-{number}"),
                    fake.judge_noise,
                )
                content = json.dumps({"result": verdict, "rationale": why})
                self._completion(url, raw, content, None, "stop", f"judge-{number}")

            def _unauthorized(self):
                self._reply(
                    401,
                    {
                        "error": {
                            "code": "401",
                            "message": "Access denied due to invalid subscription key "
                            "or wrong API endpoint. Make sure to provide a valid key for "
                            "an active subscription and use a correct regional API "
                            "endpoint for your resource.",
                        }
                    },
                )

            def _schema_problem(self, response_format) -> str | None:
                if not isinstance(response_format, dict):
                    return None
                if response_format.get("type") != "json_schema":
                    return None
                spec = response_format.get("json_schema") or {}
                name = spec.get("name", "")
                if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                    return (
                        "Invalid 'response_format.json_schema.name': string does not "
                        "match pattern. Expected a string that matches the pattern "
                        "'^[a-zA-Z0-9_-]+$'."
                    )
                if not spec.get("strict"):
                    return None
                errors = schema_errors(spec.get("schema") or {})
                if errors:
                    return f"Invalid schema for response_format '{name}': {errors[0]}"
                return None

            def _completion(self, url, raw, content, refusal, finish, number):
                self._reply(
                    200,
                    {
                        "id": f"chatcmpl-{number}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": url.path.split("/")[3]
                        if url.path.count("/") > 3
                        else "fake",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": finish,
                                "message": {
                                    "role": "assistant",
                                    "content": content,
                                    "refusal": refusal,
                                },
                            }
                        ],
                        "usage": {
                            "prompt_tokens": len(raw) // 4,
                            "completion_tokens": len(content or "") // 4,
                            "total_tokens": len(raw) // 4 + len(content or "") // 4,
                        },
                    },
                )

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument(
        "--imperfect",
        type=float,
        default=0.0,
        help="share of requests that go wrong, spread evenly over the faults",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    imperfect = (
        ImperfectModel.uniform(args.imperfect, args.seed) if args.imperfect else None
    )
    with FakeAzureOpenAI(args.port, args.latency, imperfect=imperfect) as server:
        print(f"Fake Azure OpenAI at {server.endpoint} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
