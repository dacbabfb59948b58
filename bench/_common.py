"""Helpers for bench scripts: throwaway services and a process-tree memory sampler."""

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self


def tree_rss_mb(root_pid: int | None = None) -> tuple[float, float]:
    """(total RSS of the process tree, RSS of its java processes), in MiB."""
    root_pid = root_pid or os.getpid()
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(pid)
        names[pid] = stat.split("(", 1)[1].rsplit(")", 1)[0]
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[pid] = int(line.split()[1])
    total = java = 0
    stack = [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        if names.get(pid) == "java":
            java += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 1024, java / 1024


class PeakMemory:
    """Samples the RSS of this process tree every ``interval`` seconds; keeps the peak."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak_total = self.peak_java = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total, java = tree_rss_mb()
            self.peak_total = max(self.peak_total, total)
            self.peak_java = max(self.peak_java, java)
            time.sleep(self.interval)

    def reset(self) -> None:
        self.peak_total = self.peak_java = 0.0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def throwaway_services(tmp: Path) -> Iterator[tuple[str, Any]]:
    """A Kafka broker on free ports and an MLflow store on sqlite, under ``tmp``; yields
    (bootstrap servers, MlflowResource) and stops the broker afterwards."""
    from anomaly_assets.devtools.broker import LocalKafkaBroker, free_port
    from anomaly_assets.resources.mlflow import MlflowResource

    broker = LocalKafkaBroker(
        port=free_port(), controller_port=free_port(), data_dir=tmp / "kafka"
    ).start()
    try:
        yield (
            broker.bootstrap_servers,
            MlflowResource(
                tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
                artifact_location=str(tmp / "mlartifacts"),
            ),
        )
    finally:
        broker.stop()
