"""A real metrics store that receives OTLP, for seeing the LLM metrics locally and for the
tests: VictoriaMetrics from Debian's package (1.112, the one Debian 13 ships).

Debian's own Prometheus is built without its OTLP receiver (2.42 in Debian 12, 2.53 in
13); VictoriaMetrics takes OTLP/HTTP at ``/opentelemetry/v1/metrics``, keeps the
OpenTelemetry metric and attribute names as they are, and answers PromQL (MetricsQL) at
``/api/v1/query`` as Prometheus does.

``anomaly-metrics-store [--port 8428]`` runs it in the foreground on 127.0.0.1 and prints
the variable to export before ``make dev``.
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from anomaly_assets import settings
from anomaly_assets.devtools.services import wait_for_http

VERSION = "1.112.0"
DEB_URL = (
    "http://deb.debian.org/debian/pool/main/v/victoriametrics/"
    f"victoria-metrics_{VERSION}+ds1-2_amd64.deb"
)
DEB_SHA256 = "1d3717f1a8ab5bf690271095dd286730f6fb0761cc8c09c0fc8f529c9838f346"
OTLP_PATH = "/opentelemetry/v1/metrics"


class MetricsStoreError(RuntimeError):
    """The store could not be fetched or started; the message says what to fix."""


def binary(cache_dir: Path = settings.JAR_CACHE_DIR) -> Path:
    """The victoria-metrics executable, downloaded (checksum verified) and unpacked once."""
    target = cache_dir / f"victoria-metrics-{VERSION}"
    exe = target / "usr" / "bin" / "victoria-metrics"
    if exe.exists():
        return exe
    if shutil.which("dpkg-deb") is None:
        raise MetricsStoreError("dpkg-deb is needed to unpack the Debian package")
    target.parent.mkdir(parents=True, exist_ok=True)
    deb = target.parent / Path(urllib.parse.urlparse(DEB_URL).path).name
    if not deb.exists() or _sha256(deb) != DEB_SHA256:
        partial = deb.with_suffix(".part")
        try:
            urllib.request.urlretrieve(DEB_URL, partial)
        except OSError as exc:
            raise MetricsStoreError(f"could not download {DEB_URL}: {exc}") from exc
        if _sha256(partial) != DEB_SHA256:
            partial.unlink()
            raise MetricsStoreError(f"{DEB_URL} does not have the pinned checksum")
        partial.rename(deb)
    unpacking = target.with_suffix(".part")
    shutil.rmtree(unpacking, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacking)], check=True)
    unpacking.rename(target)
    return exe


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class LocalMetricsStore:
    """One VictoriaMetrics process on 127.0.0.1; fresh samples are queryable at once."""

    port: int = 8428
    data_dir: Path = field(default_factory=lambda: settings.LOCAL_DIR / "_metrics")
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_metrics_endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set to."""
        return self.url + OTLP_PATH

    def start(self, timeout_s: float = 30.0) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "victoria-metrics.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(binary()),
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.data_dir / 'data'}",
                "-retentionPeriod=30d",
                # answer with the newest samples (the default hides the last 30 s)
                "-search.latencyOffset=0s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        running = self.process.poll
        if wait_for_http(self.url + "/health", timeout_s, lambda: running() is None):
            return self
        if running() is not None:
            raise MetricsStoreError(
                f"victoria-metrics exited with {self.process.returncode}; see "
                f"{self.data_dir / 'victoria-metrics.log'}"
            )
        self.stop()
        raise MetricsStoreError(f"victoria-metrics did not answer on {self.url}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def query(self, promql: str) -> list[dict]:
        """The instant vector of ``promql`` now: [{"metric": {...}, "value": [t, "v"]}]."""
        data = urllib.parse.urlencode({"query": promql, "nocache": "1"}).encode()
        with urllib.request.urlopen(self.url + "/api/v1/query", data, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise MetricsStoreError(f"query {promql!r} failed: {body}")
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout_s: float = 15.0) -> list[dict]:
        """``query`` once it has an answer: samples become searchable within a second or
        two of their arrival."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="anomaly-metrics-store", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=8428)
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=["run", "fetch"],
        help="run (foreground) or only fetch the binary",
    )
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(binary())
        return 0
    store = LocalMetricsStore(port=args.port).start()
    print(
        f"VictoriaMetrics {VERSION} on {store.url} (UI: {store.url}/vmui)\n"
        f"export OTEL_EXPORTER_OTLP_METRICS_ENDPOINT={store.otlp_metrics_endpoint}"
    )
    try:
        store.process.wait()
    except KeyboardInterrupt:
        store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
