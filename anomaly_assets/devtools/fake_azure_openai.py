"""A local HTTP server speaking Azure OpenAI's chat-completions protocol, for tests and benches.

The real endpoint is out of reach here; this server lets the real ``openai`` client talk over
real sockets. It answers ``POST /openai/deployments/{deployment}/chat/completions`` with a
grounded explanation derived from the request's JSON data, can add latency, and injects
faults from a queue: ``429``, ``500``, ``timeout``, ``bad_json``, ``schema``, ``refusal``.
Every request (path, query, headers, body) is recorded for inspection.

``python -m anomaly_assets.devtools.fake_azure_openai --port 8089 --latency 0.3``
"""

import argparse
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlparse

FAULTS = ("429", "500", "timeout", "bad_json", "schema", "refusal")


def grounded_answer(payload: dict) -> dict:
    """A valid explanation whose factors are the payload's strongest contributors."""
    contributions = payload.get("top_contributions", {})
    factors = payload.get("group_factors") or list(contributions)[:2] or ["events_5m"]
    factors = sorted(factors, key=lambda f: -contributions.get(f, 0.0))
    top = (payload.get("severity_range") or [0, 0])[1]
    risk = "critical" if top >= 99.9 else "high" if top >= 99.5 else "medium"
    return {
        "summary": f"{payload.get('group_size', 1)} {payload.get('segment', 'event')} "
        f"anomalies driven by {' and '.join(factors)}.",
        "user_intent": "Automated or unauthorised activity.",
        "risk_level": risk,
        "risk_explanation": f"Severity up to p{top}; {factors[0]} is far from the baseline.",
        "confidence": 0.8,
        "top_factors": factors,
        "recommended_action": "Review the account and block the source if confirmed.",
    }


class FakeAzureOpenAI:
    def __init__(
        self,
        port: int = 0,
        latency_s: float = 0.0,
        api_key: str | None = None,
        timeout_sleep_s: float = 5.0,
    ) -> None:
        self.latency_s = latency_s
        self.api_key = api_key
        self.timeout_sleep_s = timeout_sleep_s
        self.faults: deque[str] = deque()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def completion_calls(self) -> int:
        return sum("/chat/completions" in r["path"] for r in self.requests)

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

            def do_GET(self):
                self._reply(
                    404, {"error": {"code": "NotFound", "message": "not found"}}
                )

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
                    fault = fake.faults.popleft() if fake.faults else None
                if fake.api_key and self.headers.get("api-key") != fake.api_key:
                    return self._reply(
                        401, {"error": {"code": "401", "message": "bad key"}}
                    )
                if not url.path.endswith("/chat/completions"):
                    return self._reply(
                        404, {"error": {"code": "NotFound", "message": url.path}}
                    )
                time.sleep(fake.latency_s)
                if fault == "429":
                    return self._reply(
                        429,
                        {"error": {"code": "429", "message": "Rate limit"}},
                        {"Retry-After": "1"},
                    )
                if fault == "500":
                    return self._reply(
                        500, {"error": {"code": "500", "message": "boom"}}
                    )
                if fault == "timeout":
                    time.sleep(fake.timeout_sleep_s)
                payload = json.loads(body["messages"][-1]["content"])
                answer = grounded_answer(payload)
                content, refusal = json.dumps(answer), None
                if fault == "bad_json":
                    content = content[: len(content) // 2]
                elif fault == "schema":
                    content = json.dumps({**answer, "risk_level": "apocalyptic"})
                elif fault == "refusal":
                    content, refusal = None, "I can't help with that."
                self._reply(
                    200,
                    {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": url.path.split("/")[3]
                        if url.path.count("/") > 3
                        else "fake",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
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
    args = parser.parse_args()
    with FakeAzureOpenAI(args.port, args.latency) as server:
        print(f"Fake Azure OpenAI at {server.endpoint} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
