"""A Spark standalone cluster (one master, one worker) from pyspark's own distribution.

For trying the project against a real cluster on one machine: point the Spark resource at
``spark://127.0.0.1:<port>`` (``ANOMALY_SPARK_MASTER``) and nothing else changes. Both
daemons run in the foreground of their own process group, bound to 127.0.0.1.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Self

from anomaly_assets.devtools.broker import free_port


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


class LocalSparkCluster:
    def __init__(
        self,
        work_dir: Path,
        cores: int = 2,
        memory: str = "4g",
        port: int | None = None,
        webui_port: int | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.cores, self.memory = cores, memory
        self.port = port or free_port()
        self.webui_port = webui_port or free_port()
        self._procs: list[subprocess.Popen] = []

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.work_dir / "logs"),
            # no REST submission server on a fixed port (6066): clusters may run side by side
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        }
        with open(self.work_dir / f"{name}.log", "ab") as log:
            self._procs.append(
                subprocess.Popen(
                    [str(spark_home() / "bin" / "spark-class"), *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    def state(self) -> dict:
        """The master's JSON status page: workers, active and completed applications."""
        url = f"http://127.0.0.1:{self.webui_port}/json/"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)

    def _bound_port(self, service: str, deadline: float) -> int:
        """The port Spark really bound: it moves to the next one when a port is taken."""
        pattern = re.compile(rf"Successfully started service '{service}' on port (\d+)")
        while time.monotonic() < deadline:
            log = (self.work_dir / "master.log").read_text(errors="replace")
            if found := pattern.search(log):
                return int(found.group(1))
            if self._procs[0].poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"Spark master did not start {service}; see {self.work_dir}")

    def start(self, timeout_s: float = 90) -> Self:
        """Master first, then (once its ports are bound) the worker, then wait for ALIVE."""
        deadline = time.monotonic() + timeout_s
        self._spawn(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--webui-port", str(self.webui_port)),
        )
        self.port = self._bound_port("sparkMaster", deadline)
        self.webui_port = self._bound_port("MasterUI", deadline)
        self._spawn(
            "worker",
            "org.apache.spark.deploy.worker.Worker",
            *("--host", "127.0.0.1", "--port", str(free_port())),
            *("--webui-port", str(free_port())),
            *("--cores", str(self.cores), "--memory", self.memory),
            *("--work-dir", str(self.work_dir / "work")),
            self.master_url,
        )
        while True:
            try:
                if any(w["state"] == "ALIVE" for w in self.state()["workers"]):
                    return self
            except OSError:
                pass
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"Spark daemon exited; see the logs in {self.work_dir}"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"no live Spark worker after {timeout_s} s")
            time.sleep(1)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        self._procs.clear()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ fails: no daemons left behind
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=".spark-cluster")
    parser.add_argument("--port", type=int, default=7077)
    parser.add_argument("--webui-port", type=int, default=8080)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--memory", default="4g")
    args = parser.parse_args(argv)
    cluster = LocalSparkCluster(
        Path(args.work_dir), args.cores, args.memory, args.port, args.webui_port
    ).start()
    print(
        f"master {cluster.master_url}, UI http://127.0.0.1:{args.webui_port}; Ctrl-C stops"
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cluster.stop()


if __name__ == "__main__":
    main()
