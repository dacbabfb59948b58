"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, started from Maven Central jars.

``anomaly-kafka start|stop|status|create-topic``. The broker runs in its own process group
so ``stop`` ends every process it started; its data and logs live under
``<lakehouse>/_kafka``; a pid file makes ``start`` idempotent.
"""

import argparse
import base64
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from anomaly_assets import settings
from anomaly_assets.devtools.jars import KAFKA_VERSION, kafka_broker_jars
from anomaly_assets.devtools.services import (  # noqa: F401 - free_port: callers' import
    free_port,
    port_is_free,
    running_pid,
    stop_group,
)

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


class BrokerError(RuntimeError):
    """The broker could not be started or reached; the message says what to fix."""


@dataclass
class LocalKafkaBroker:
    """One KRaft node (broker + controller) bound to 127.0.0.1 only."""

    port: int = 9092
    controller_port: int | None = None
    data_dir: Path = field(default_factory=lambda: settings.LOCAL_DIR / "_kafka")
    version: str = KAFKA_VERSION
    heap: str = "512m"
    num_partitions: int = 3
    cluster_id: str | None = (
        None  # base64 of a random UUID when formatting, unless given
    )
    #: More server.properties (tests shorten the retention and log cleaner intervals).
    extra_props: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if self.controller_port is None:
            self.controller_port = self.port + 1

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    def pid(self) -> int | None:
        return running_pid(self.pid_file)

    def _write_config(self) -> Path:
        log_dirs = self.data_dir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(log_dirs),
            "num.partitions": str(self.num_partitions),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "message.max.bytes": str(2 * 1024 * 1024),
            **self.extra_props,
        }
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2.format(log_file=self.log_file)
        )
        return config

    def _java(self, lib: Path, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> "LocalKafkaBroker":
        """Start the broker and wait until it answers metadata requests. Idempotent."""
        if self.pid() is not None and self.is_reachable():
            return self
        for p in (self.port, self.controller_port):
            if not port_is_free(p):
                raise BrokerError(
                    f"Port {p} on 127.0.0.1 is already in use by another process, so the "
                    f"Kafka broker cannot listen there. Stop that process or choose another "
                    f"port (anomaly-kafka start --port N, or ANOMALY_KAFKA_BOOTSTRAP)."
                )
        lib = kafka_broker_jars(self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not (self.data_dir / "data" / "meta.properties").exists():
            cluster_id = self.cluster_id or (
                base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            )
            fmt = subprocess.run(
                self._java(
                    lib,
                    "kafka.tools.StorageTool",
                    "format",
                    # "=" form: a base64 id may start with "-", which argparse takes for a flag
                    f"--cluster-id={cluster_id}",
                    f"--config={config}",
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise BrokerError(
                    f"Formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}"
                )
        with open(self.data_dir / "logs" / "stdout.log", "ab") as stdout:
            proc = subprocess.Popen(
                self._java(lib, "kafka.Kafka", str(config)),
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"The Kafka broker exited with code {proc.returncode} during start-up; "
                    f"last log lines:\n{self._tail()}"
                )
            if self.is_reachable(timeout=1.0):
                return self
            time.sleep(0.3)
        self.stop()
        raise BrokerError(
            f"The Kafka broker did not answer within {timeout}s:\n{self._tail()}"
        )

    def _tail(self, lines: int = 30) -> str:
        out = []
        for f in (self.data_dir / "logs" / "stdout.log", self.log_file):
            if f.exists():
                out += f.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def is_reachable(self, timeout: float = 2.0) -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout):
                pass
        except OSError:
            return False
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap_servers, "log_level": 0}
        )
        try:
            return bool(admin.list_topics(timeout=timeout).brokers)
        except KafkaException:
            return False

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker's whole process group. Returns whether one was running."""
        return stop_group(self.pid_file, timeout)

    def status(self) -> dict:
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "bootstrap_servers": self.bootstrap_servers,
            "reachable": pid is not None and self.is_reachable(),
            "data_dir": str(self.data_dir),
            "kafka_version": self.version,
        }


def create_topic(bootstrap_servers: str, topic: str, partitions: int = 3) -> bool:
    """Create ``topic`` if it does not exist. Returns whether it was created."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    if topic in admin.list_topics(timeout=10).topics:
        return False
    futures = admin.create_topics([NewTopic(topic, partitions, 1)])
    try:
        futures[topic].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    default_port = int(settings.KAFKA_BOOTSTRAP_SERVERS.rsplit(":", 1)[-1])
    parser = argparse.ArgumentParser(prog="anomaly-kafka", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status", "create-topic"])
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--controller-port", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=settings.LOCAL_DIR / "_kafka")
    parser.add_argument("--topic", default=settings.KAFKA_TOPIC)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args(argv)
    broker = LocalKafkaBroker(
        port=args.port, controller_port=args.controller_port, data_dir=args.data_dir
    )
    try:
        if args.command == "start":
            already = broker.pid() is not None and broker.is_reachable()
            t0 = time.monotonic()
            broker.start()
            state = (
                "already running"
                if already
                else f"started in {time.monotonic() - t0:.1f}s"
            )
            print(
                f"Kafka {broker.version} {state} at {broker.bootstrap_servers} "
                f"(pid {broker.pid()}, data {broker.data_dir})"
            )
        elif args.command == "stop":
            print(
                "Kafka broker stopped."
                if broker.stop()
                else "No Kafka broker was running."
            )
        elif args.command == "status":
            for key, value in broker.status().items():
                print(f"{key}: {value}")
            return 0 if broker.pid() is not None else 3
        else:
            created = create_topic(
                broker.bootstrap_servers, args.topic, args.partitions
            )
            print(f"Topic {args.topic} {'created' if created else 'already exists'}.")
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
