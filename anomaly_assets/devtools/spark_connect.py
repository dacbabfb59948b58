"""A warm local Spark Connect server from pyspark's own distribution, on 127.0.0.1.

``anomaly-spark start|stop|status``. One JVM with Delta and the Kafka connector stays up;
each Dagster step attaches to it as its own Connect session (separate temporary views,
caches and settings) in about a second instead of starting a JVM and resolving packages.
Like the broker it runs in its own process group, with a pid file that makes ``start``
idempotent; its logs live under ``<lakehouse>/_spark_connect``.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from anomaly_assets import settings
from anomaly_assets.devtools.services import port_is_free, running_pid, stop_group
from anomaly_assets.devtools.spark_cluster import spark_home
from anomaly_assets.resources.spark import SparkResource, build_spark_conf

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class SparkConnectError(RuntimeError):
    """The server could not be started or reached; the message says what to fix."""


@dataclass
class LocalSparkConnectServer:
    """``local[*]`` Spark with Delta behind a Spark Connect endpoint on 127.0.0.1."""

    port: int = 15002
    work_dir: Path = field(
        default_factory=lambda: settings.LOCAL_DIR / "_spark_connect"
    )
    driver_memory: str = "4g"
    #: Settings of the server's Spark (packages, Delta, shuffle partitions), as a run's own.
    spark: SparkResource = field(default_factory=SparkResource)

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir).resolve()

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.work_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "server.log"

    def pid(self) -> int | None:
        return running_pid(self.pid_file)

    def command(self) -> list[str]:
        """spark-submit of the Connect server with the project's Spark settings."""
        s = self.spark
        conf = build_spark_conf(
            "local[*]",
            "anomaly_assets Spark Connect",
            self.driver_memory,
            s.shuffle_partitions,
            s.packages,
            s.ivy_dir,
            "127.0.0.1",
            s.ui_enabled,
            s.extra_conf,
        ) | {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.log.level": s.log_level,
        }
        args = [str(spark_home() / "bin" / "spark-submit"), "--class", SERVER_CLASS]
        for key, value in conf.items():
            args += ["--conf", f"{key}={value}"]
        return args

    def is_reachable(self, timeout: float = 2.0) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 180.0) -> Self:
        """Start the server and wait until a session answers a query. Idempotent."""
        deadline = time.monotonic() + timeout
        if self.pid() is not None:
            # running, or still starting (another `start`): wait for it, start no second one
            while time.monotonic() < deadline and self.pid() is not None:
                if self.is_reachable() and self._answers():
                    return self
                time.sleep(0.5)
            raise SparkConnectError(
                f"The Spark Connect server (pid {self.pid()}) does not answer at {self.url}; "
                f"stop it (anomaly-spark stop) and start again. Last log lines:\n{self._tail()}"
            )
        if not port_is_free(self.port):
            raise SparkConnectError(
                f"Port {self.port} on 127.0.0.1 is already in use by another process, so "
                "the Spark Connect server cannot listen there. Stop that process or choose "
                "another port (anomaly-spark start --port N, and ANOMALY_SPARK_REMOTE)."
            )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            # Python UDF workers (scoring) run this interpreter, which has the project.
            "PYSPARK_PYTHON": sys.executable,
        }
        env.pop("SPARK_REMOTE", None)
        env.pop("SPARK_CONNECT_MODE_ENABLED", None)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                self.command(),
                env=env,
                cwd=self.work_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SparkConnectError(
                    f"The Spark Connect server exited with code {proc.returncode} during "
                    f"start-up; last log lines:\n{self._tail()}"
                )
            if self.is_reachable(timeout=1.0) and self._answers():
                return self
            time.sleep(0.5)
        self.stop()
        raise SparkConnectError(
            f"The Spark Connect server did not answer within {timeout}s:\n{self._tail()}"
        )

    def _answers(self) -> bool:
        # The Connect class itself: pyspark's generic builder would mark this whole process
        # as a Connect client, and a classic session could no longer start in it.
        from pyspark.sql.connect.session import SparkSession

        try:
            session = SparkSession.builder.remote(self.url).create()
        except Exception:  # noqa: BLE001 - not serving yet
            return False
        try:
            return session.range(1).count() == 1
        except Exception:  # noqa: BLE001
            return False
        finally:
            session.stop()

    def _tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(
            self.log_file.read_text(errors="replace").splitlines()[-lines:]
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the server's whole process group. Returns whether one was running."""
        return stop_group(self.pid_file, timeout)

    def status(self) -> dict:
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "url": self.url,
            "reachable": pid is not None and self.is_reachable(),
            "log": str(self.log_file),
        }

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="anomaly-spark", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=15002)
    parser.add_argument(
        "--work-dir", type=Path, default=settings.LOCAL_DIR / "_spark_connect"
    )
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args(argv)
    server = LocalSparkConnectServer(
        port=args.port, work_dir=args.work_dir, driver_memory=args.driver_memory
    )
    try:
        if args.command == "start":
            already = server.pid() is not None and server.is_reachable()
            t0 = time.monotonic()
            server.start()
            state = (
                "already running"
                if already
                else f"started in {time.monotonic() - t0:.1f}s"
            )
            print(
                f"Spark Connect server {state} at {server.url} (pid {server.pid()}, "
                f"log {server.log_file}); runs attach with ANOMALY_SPARK_REMOTE={server.url}"
            )
        elif args.command == "stop":
            print(
                "Spark Connect server stopped."
                if server.stop()
                else "No Spark Connect server was running."
            )
        else:
            for key, value in server.status().items():
                print(f"{key}: {value}")
            return 0 if server.pid() is not None else 3
    except SparkConnectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
