"""Realistic user-activity events for the local topic, with labelled anomalies and faults.

Users have stable habits (home country, devices, IPs, active hours, typical spend and download
sizes); sessions follow them. Anomaly episodes of the six contract.ANOMALY_TYPES and malformed messages
are injected at given rates. Ground truth never enters the payload: it goes to a CSV side file
with the Kafka partition and offset of every labelled message.

``anomaly-generate --events 100000 --anomaly-rate 0.01 --malformed-rate 0.001``
"""

import argparse
import contextlib
import csv
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from anomaly_assets import settings
from anomaly_assets.contract import ANOMALY_TYPES, MALFORMED_KINDS, SCHEMA_VERSION

COUNTRIES = {  # country: (weight, continent, first IP octet)
    "US": (30, "NA", 23),
    "GB": (10, "EU", 51),
    "DE": (10, "EU", 46),
    "FR": (8, "EU", 62),
    "IN": (10, "AS", 49),
    "BR": (6, "SA", 177),
    "JP": (6, "AS", 126),
    "CA": (6, "NA", 24),
    "AU": (4, "OC", 1),
    "ES": (4, "EU", 88),
    "NL": (3, "EU", 77),
    "SE": (3, "EU", 78),
}
#: Where attackers log in from: far from most users.
ATTACK_COUNTRIES = ("RU", "CN", "NG", "KP", "VN", "RO")
ATTACK_OCTETS = {"RU": 95, "CN": 36, "NG": 105, "KP": 175, "VN": 113, "RO": 86}

USER_AGENTS = {
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari",
        "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    ),
    "mobile": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile",
    ),
    "tablet": (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile",
    ),
}
BOT_AGENTS = (
    "python-requests/2.32.3",
    "curl/8.8.0",
    "Go-http-client/1.1",
    "HeadlessChrome/126",
)

#: Normal in-session actions and their weights.
ACTIONS = (
    ("page_view", 50),
    ("search", 18),
    ("add_to_cart", 9),
    ("purchase", 3),
    ("file_download", 6),
    ("api_call", 8),
)


@dataclass(frozen=True)
class UserProfile:
    user_id: str
    country: str
    devices: tuple[tuple[str, str], ...]  # (device_type, user_agent)
    ips: tuple[str, ...]
    active_hour: int
    spend: float
    download_bytes: int
    activity: float


@dataclass(frozen=True)
class Label:
    kind: str  # "anomaly" or "malformed"
    label: str  # an ANOMALY_TYPES or MALFORMED_KINDS value
    episode_id: str
    event_id: str | None


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    label: Label | None


def random_ip(rng: random.Random, first_octet: int) -> str:
    return f"{first_octet}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def make_users(rng: random.Random, n_users: int) -> list[UserProfile]:
    countries = list(COUNTRIES)
    weights = [COUNTRIES[c][0] for c in countries]
    users = []
    for i in range(n_users):
        country = rng.choices(countries, weights)[0]
        device_types = rng.sample(
            ("desktop", "mobile", "tablet"), rng.choice((1, 1, 2))
        )
        devices = tuple((d, rng.choice(USER_AGENTS[d])) for d in device_types)
        octet = COUNTRIES[country][2]
        users.append(
            UserProfile(
                user_id=f"u{i:06d}",
                country=country,
                devices=devices,
                ips=tuple(
                    random_ip(rng, octet) for _ in range(rng.choice((1, 1, 2, 3)))
                ),
                active_hour=int(rng.gauss(14, 4)) % 24,
                spend=round(math.exp(rng.gauss(3.5, 0.7)), 2),  # median ~ 33
                download_bytes=int(math.exp(rng.gauss(13, 1.0))),  # median ~ 440 kB
                activity=rng.paretovariate(2.0),
            )
        )
    return users


class EventGenerator:
    """An endless, seeded stream of messages; anomaly and malformed rates are per message."""

    def __init__(
        self,
        seed: int = 42,
        n_users: int = 500,
        anomaly_rate: float = 0.01,
        malformed_rate: float = 0.0,
        start: datetime | None = None,
        sessions_per_minute: float = 4.0,
        anomaly_types: tuple[str, ...] = ANOMALY_TYPES,
        population_seed: int | None = None,
    ) -> None:
        """``population_seed`` draws the users (default: ``seed``): a fixed population with
        a fresh ``seed`` continues the same users' activity with new events."""
        if not 0 <= anomaly_rate < 1 or not 0 <= malformed_rate < 1:
            raise ValueError("anomaly_rate and malformed_rate must be in [0, 1)")
        unknown = set(anomaly_types) - set(ANOMALY_TYPES)
        if unknown:
            raise ValueError(
                f"unknown anomaly types {sorted(unknown)}; know {ANOMALY_TYPES}"
            )
        self.rng = random.Random(seed)
        self.users = self._make_users(
            self.rng if population_seed is None else random.Random(population_seed),
            n_users,
        )
        self.anomaly_rate = anomaly_rate
        self.malformed_rate = malformed_rate
        self.anomaly_types = anomaly_types
        self.clock = start or datetime(2026, 11, 1, tzinfo=UTC)
        self.session_gap = 60.0 / sessions_per_minute
        self._by_hour = [
            [
                u
                for u in self.users
                if min((h - u.active_hour) % 24, (u.active_hour - h) % 24) <= 4
            ]
            or self.users
            for h in range(24)
        ]
        self._weights_by_hour = [[u.activity for u in us] for us in self._by_hour]
        self._episodes = 0
        self.per_type = dict.fromkeys(anomaly_types, 0)
        self.produced = 0
        self.anomalous = 0

    # -- building blocks ---------------------------------------------------------------------
    def _make_users(self, rng: random.Random, n_users: int) -> list[UserProfile]:
        return make_users(rng, n_users)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _event(
        self,
        user: UserProfile,
        event_type: str,
        ts: datetime,
        session_id: str,
        ip: str,
        country: str,
        device: tuple[str, str],
        **fields,
    ) -> dict:
        event = {
            "event_id": self._uuid(),
            "event_type": event_type,
            "event_ts": ts.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{ts.microsecond // 1000:03d}Z",
            "user_id": user.user_id,
            "session_id": session_id,
            "ip_address": ip,
            "country": country,
            "device_type": device[0],
            "user_agent": device[1],
        }
        event.update(fields)
        event["schema_version"] = SCHEMA_VERSION
        return event

    def _action_fields(self, user: UserProfile, action: str) -> dict:
        rng = self.rng
        if action == "purchase":
            items = rng.choice((1, 1, 1, 2, 2, 3))
            return {
                "amount": round(user.spend * rng.lognormvariate(0, 0.35), 2),
                "items": items,
                "duration_ms": rng.randint(800, 6000),
            }
        if action == "add_to_cart":
            return {
                "items": rng.choice((1, 1, 2)),
                "duration_ms": rng.randint(300, 3000),
            }
        if action in ("file_download", "api_call"):
            size = int(user.download_bytes * rng.lognormvariate(0, 0.5))
            return {
                "bytes_transferred": max(size, 200),
                "duration_ms": rng.randint(50, 4000),
            }
        return {"duration_ms": rng.randint(500, 30000)}

    def _pick_user(self) -> UserProfile:
        hour = self.clock.hour
        return self.rng.choices(self._by_hour[hour], self._weights_by_hour[hour])[0]

    # -- normal sessions ---------------------------------------------------------------------
    def _session(self, user: UserProfile) -> list[tuple[dict, None]]:
        rng = self.rng
        ts = self.clock
        session_id = self._uuid()
        ip, device = rng.choice(user.ips), rng.choice(user.devices)

        def ev(kind: str, **fields) -> tuple[dict, None]:
            return self._event(
                user, kind, ts, session_id, ip, user.country, device, **fields
            ), None

        out = []
        if rng.random() < 0.03:  # a mistyped password now and then
            out.append(ev("login", success=False, duration_ms=rng.randint(200, 900)))
            ts += timedelta(seconds=rng.uniform(3, 20))
        out.append(ev("login", success=True, duration_ms=rng.randint(200, 900)))
        names, weights = zip(*ACTIONS)
        for _ in range(rng.randint(1, 12)):
            ts += timedelta(seconds=rng.expovariate(1 / 25))
            action = rng.choices(names, weights)[0]
            out.append(ev(action, **self._action_fields(user, action)))
        if rng.random() < 0.6:
            ts += timedelta(seconds=rng.expovariate(1 / 30))
            out.append(ev("logout", duration_ms=rng.randint(50, 300)))
        return out

    # -- anomaly episodes: (event, labelled) pairs ---------------------------------------------
    def _episode(self, kind: str, user: UserProfile) -> list[tuple[dict, bool]]:
        rng = self.rng
        ts = self.clock
        session_id = self._uuid()
        attack_country = rng.choice(ATTACK_COUNTRIES)
        attack_ip = random_ip(rng, ATTACK_OCTETS[attack_country])
        home_ip, home_device = rng.choice(user.ips), rng.choice(user.devices)
        out: list[tuple[dict, bool]] = []

        def add(event_type, ip, country, device, labelled=True, sid=None, **fields):
            out.append(
                (
                    self._event(
                        user,
                        event_type,
                        ts,
                        sid or session_id,
                        ip,
                        country,
                        device,
                        **fields,
                    ),
                    labelled,
                )
            )

        if kind == "credential_stuffing":
            bot = ("desktop", rng.choice(BOT_AGENTS))
            for _ in range(rng.randint(8, 25)):
                ts += timedelta(seconds=rng.uniform(0.2, 2.0))
                add(
                    "login",
                    attack_ip,
                    attack_country,
                    bot,
                    success=False,
                    duration_ms=rng.randint(20, 120),
                )
        elif kind == "impossible_travel":
            add(
                "login",
                home_ip,
                user.country,
                home_device,
                labelled=False,
                success=True,
                duration_ms=rng.randint(200, 900),
            )
            ts += timedelta(minutes=rng.uniform(5, 30))
            far = ("desktop", rng.choice(USER_AGENTS["desktop"]))
            sid = self._uuid()
            add(
                "login",
                attack_ip,
                attack_country,
                far,
                sid=sid,
                success=True,
                duration_ms=rng.randint(200, 900),
            )
            for _ in range(rng.randint(1, 4)):
                ts += timedelta(seconds=rng.uniform(5, 60))
                add(
                    "page_view",
                    attack_ip,
                    attack_country,
                    far,
                    sid=sid,
                    duration_ms=rng.randint(500, 20000),
                )
        elif kind == "data_exfiltration":
            for _ in range(rng.randint(5, 15)):
                ts += timedelta(seconds=rng.uniform(1, 10))
                add(
                    rng.choice(("file_download", "api_call")),
                    home_ip,
                    user.country,
                    home_device,
                    bytes_transferred=rng.randint(50, 500) * 1024 * 1024,
                    duration_ms=rng.randint(5000, 60000),
                )
        elif kind == "high_value_purchase":
            items = rng.randint(5, 30)
            add(
                "add_to_cart",
                home_ip,
                user.country,
                home_device,
                labelled=False,
                items=items,
                duration_ms=rng.randint(300, 3000),
            )
            ts += timedelta(seconds=rng.uniform(10, 120))
            add(
                "purchase",
                home_ip,
                user.country,
                home_device,
                amount=round(user.spend * rng.uniform(15, 60), 2),
                items=items,
                duration_ms=rng.randint(800, 6000),
            )
        elif kind == "bot_activity":
            bot = ("desktop", rng.choice(BOT_AGENTS))
            for _ in range(rng.randint(30, 80)):
                ts += timedelta(seconds=rng.uniform(0.05, 0.5))
                add(
                    rng.choice(("page_view", "search")),
                    attack_ip,
                    user.country,
                    bot,
                    duration_ms=rng.randint(5, 50),
                )
        elif kind == "account_takeover":
            new_device = ("mobile", rng.choice(USER_AGENTS["mobile"]))
            add(
                "password_reset",
                attack_ip,
                attack_country,
                new_device,
                duration_ms=rng.randint(300, 2000),
            )
            ts += timedelta(seconds=rng.uniform(20, 120))
            add(
                "login",
                attack_ip,
                attack_country,
                new_device,
                success=True,
                duration_ms=rng.randint(200, 900),
            )
            ts += timedelta(seconds=rng.uniform(10, 60))
            add(
                "purchase",
                attack_ip,
                attack_country,
                new_device,
                amount=round(user.spend * rng.uniform(5, 20), 2),
                items=rng.randint(1, 5),
                duration_ms=rng.randint(800, 6000),
            )
        else:  # pragma: no cover - guarded in __init__
            raise ValueError(kind)
        return out

    # -- malformed messages -----------------------------------------------------------------
    def _malform(self, event: dict) -> tuple[str, bytes]:
        rng = self.rng
        kind = rng.choice(MALFORMED_KINDS)
        if kind == "not_json":
            return (
                kind,
                f"user={event['user_id']}&type={event['event_type']}&ok=1".encode(),
            )
        if kind == "truncated_json":
            raw = json.dumps(event).encode()
            return kind, raw[: rng.randint(5, len(raw) - 5)]
        if kind == "missing_field":
            event.pop(rng.choice(("event_id", "event_type", "event_ts", "user_id")))
        elif kind == "wrong_type":
            field = rng.choice(("event_ts", "schema_version", "duration_ms"))
            event[field] = {
                "event_ts": 1700000000,
                "schema_version": "one",
                "duration_ms": "fast",
            }[field]
        elif kind == "oversized":
            event["user_agent"] = "A" * 70_000
        elif kind == "invalid_utf8":
            raw = json.dumps(event).encode()
            cut = raw.index(b'"user_agent": "') + len(b'"user_agent": "')
            return kind, raw[:cut] + b"\xff\xfe\xc3(" + raw[cut:]
        return kind, json.dumps(event).encode()

    def _next_kind(self) -> str:
        """The type with the fewest labelled events so far: every type gets its share of
        events, whatever its episode length."""
        fewest = min(self.per_type.values())
        return self.rng.choice([t for t, c in self.per_type.items() if c == fewest])

    # -- the stream -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Message]:
        rng = self.rng
        while True:
            user = self._pick_user()
            due = self.anomaly_rate > 0 and self.anomalous < self.anomaly_rate * (
                self.produced + 1
            )
            if due and rng.random() < 0.5:
                self._episodes += 1
                kind = self._next_kind()
                episode_id = f"ep{self._episodes:06d}"
                pairs = [
                    (
                        e,
                        Label("anomaly", kind, episode_id, e["event_id"])
                        if lab
                        else None,
                    )
                    for e, lab in self._episode(kind, user)
                ]
                self.per_type[kind] += sum(label is not None for _, label in pairs)
            else:
                pairs = self._session(user)
            self.clock += timedelta(seconds=rng.expovariate(1 / self.session_gap))
            for event, label in pairs:
                self.produced += 1
                if label is not None:
                    self.anomalous += 1
                    value = json.dumps(event, separators=(",", ":")).encode()
                elif self.malformed_rate and rng.random() < self.malformed_rate:
                    kind, value = self._malform(event)
                    label = Label("malformed", kind, "", event.get("event_id"))
                else:
                    value = json.dumps(event, separators=(",", ":")).encode()
                yield Message(event.get("user_id", "").encode(), value, label)


LABEL_COLUMNS = (
    "topic",
    "partition",
    "offset",
    "user_id",
    "event_id",
    "kind",
    "label",
    "episode_id",
)


@dataclass
class ProduceReport:
    produced: int
    delivered: int
    failed: int
    labelled: int
    seconds: float
    labels_path: Path | None

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


def produce(
    bootstrap_servers: str,
    topic: str,
    n_events: int,
    generator: EventGenerator,
    labels_path: Path | None = None,
    partitions: int = 3,
    progress_every: float = 5.0,
    log=print,
) -> ProduceReport:
    """Produce ``n_events`` messages to ``topic`` (created if missing) and write their labels.

    The producer is idempotent (no duplicates on its own retries); every message's delivery is
    confirmed before returning, and labelled messages are written with their partition/offset.
    """
    from confluent_kafka import Producer

    from anomaly_assets.devtools.broker import create_topic

    create_topic(bootstrap_servers, topic, partitions)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 200000,
            "message.max.bytes": 2 * 1024 * 1024,
        }
    )
    counts = {"delivered": 0, "failed": 0, "labelled": 0}
    errors: list[str] = []
    with contextlib.ExitStack() as stack:
        writer = None
        if labels_path is not None:
            labels_path.parent.mkdir(parents=True, exist_ok=True)
            is_new = not labels_path.exists() or labels_path.stat().st_size == 0
            # labels accumulate across runs, like the topic
            writer = csv.writer(stack.enter_context(open(labels_path, "a", newline="")))
            if is_new:
                writer.writerow(LABEL_COLUMNS)

        def delivered(err, msg, label: Label | None = None) -> None:
            if err is not None:
                counts["failed"] += 1
                if len(errors) < 5:
                    errors.append(str(err))
                return
            counts["delivered"] += 1
            if label is not None and writer is not None:
                counts["labelled"] += 1
                writer.writerow(
                    (
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        msg.key().decode(errors="replace"),
                        label.event_id or "",
                        label.kind,
                        label.label,
                        label.episode_id,
                    )
                )

        t0 = last = time.monotonic()
        stream = iter(generator)
        for i in range(n_events):
            m = next(stream)
            cb = (
                delivered
                if m.label is None
                else (lambda err, msg, _l=m.label: delivered(err, msg, _l))
            )
            while True:
                try:
                    producer.produce(topic, m.value, m.key, on_delivery=cb)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 1000 == 0:
                producer.poll(0)
                now = time.monotonic()
                if now - last >= progress_every:
                    last = now
                    log(
                        f"produced {i:,}/{n_events:,} ({i / n_events:.0%}, "
                        f"{i / (now - t0):,.0f} events/s)"
                    )
        remaining = producer.flush(120)
        seconds = time.monotonic() - t0
    if remaining or counts["failed"]:
        raise RuntimeError(
            f"{counts['failed']} messages failed and {remaining} were not delivered to "
            f"{topic} at {bootstrap_servers}: {errors}"
        )
    return ProduceReport(
        n_events,
        counts["delivered"],
        counts["failed"],
        counts["labelled"],
        seconds,
        labels_path,
    )


def latest_event_time(
    bootstrap_servers: str, topic: str, timeout: float = 10.0, tail: int = 50
) -> datetime | None:
    """The newest ``event_ts`` among the last ``tail`` messages of each partition of
    ``topic``; None for a missing or empty topic. Messages that are not events are skipped."""
    from confluent_kafka import Consumer, TopicPartition

    from anomaly_assets.ingestion.offsets import KafkaUnavailable, fetch_offsets

    try:
        starts, ends = fetch_offsets(
            {"bootstrap.servers": bootstrap_servers}, topic, timeout
        )
    except KafkaUnavailable:
        return None
    todo = {p: end for p, end in ends.items() if end > starts[p]}
    if not todo:
        return None
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"anomaly-generate-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign(
        [
            TopicPartition(topic, p, max(starts[p], end - tail))
            for p, end in todo.items()
        ]
    )
    newest = None
    deadline = time.monotonic() + timeout
    try:
        while todo and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.offset() + 1 >= todo.get(msg.partition(), 0):
                todo.pop(msg.partition(), None)
            try:
                ts = datetime.fromisoformat(json.loads(msg.value())["event_ts"])
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                continue
            if ts.tzinfo is not None and (newest is None or ts > newest):
                newest = ts
    finally:
        consumer.close()
    return newest


def continuing_start(bootstrap_servers: str, topic: str) -> datetime:
    """Where new events start: a second after the topic's newest event, or now."""
    latest = latest_event_time(bootstrap_servers, topic)
    if latest is not None:
        return latest + timedelta(seconds=1)
    return datetime.now(UTC).replace(microsecond=0)


def fresh_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="anomaly-generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=10_000, help="messages to produce"
    )
    parser.add_argument("--bootstrap", default=settings.KAFKA_BOOTSTRAP_SERVERS)
    parser.add_argument("--topic", default=settings.KAFKA_TOPIC)
    parser.add_argument(
        "--partitions", type=int, default=3, help="if the topic is created"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the event stream (default: a fresh one, printed; give it to repeat)",
    )
    parser.add_argument(
        "--population-seed",
        type=int,
        default=42,
        help="seed of the users: the same users come back run after run",
    )
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument(
        "--anomaly-rate",
        type=float,
        default=0.01,
        help="share of messages that belong to an anomaly episode",
    )
    parser.add_argument(
        "--malformed-rate",
        type=float,
        default=0.0,
        help="share of messages made malformed",
    )
    parser.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=None,
        help="event time of the first event, ISO-8601 (default: a second after the "
        "topic's newest event, or now for a new topic)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=settings.LOCAL_DIR / "labels.csv",
        help="CSV of ground-truth labels with partition and offset",
    )
    args = parser.parse_args(argv)
    start = args.start or continuing_start(args.bootstrap, args.topic)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    seed = fresh_seed() if args.seed is None else args.seed
    print(
        f"Events from {start.isoformat()} with --seed {seed} "
        f"(--population-seed {args.population_seed})",
        file=sys.stderr,
    )
    gen = EventGenerator(
        seed,
        args.users,
        args.anomaly_rate,
        args.malformed_rate,
        start,
        population_seed=args.population_seed,
    )
    report = produce(
        args.bootstrap,
        args.topic,
        args.events,
        gen,
        args.labels,
        args.partitions,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(
        f"Produced {report.delivered:,} messages to {args.topic} at {args.bootstrap} in "
        f"{report.seconds:.1f}s ({report.rate:,.0f} events/s); {report.labelled:,} labelled "
        f"messages written to {report.labels_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
