"""The local broker is a real Kafka; the generator's events and labels come back exactly."""

import csv
import json
import socket
import subprocess

import pytest

from anomaly_assets.contract import ANOMALY_TYPES, MALFORMED_KINDS, REQUIRED_FIELDS
from anomaly_assets.devtools import generator
from anomaly_assets.devtools.broker import (
    BrokerError,
    LocalKafkaBroker,
    create_topic,
    free_port,
)
from anomaly_assets.devtools.generator import EventGenerator, main, produce
from anomaly_assets.ingestion.validation import classify
from anomaly_assets_tests.helpers import consume_all


def test_generated_events_and_labels_come_back_exactly(kafka_broker, topic, tmp_path):
    n = 4000
    labels_path = tmp_path / "labels.csv"
    gen = EventGenerator(seed=7, n_users=80, anomaly_rate=0.05, malformed_rate=0.02)
    report = produce(
        kafka_broker.bootstrap_servers, topic, n, gen, labels_path, partitions=3
    )
    assert report.delivered == n and report.failed == 0

    messages = consume_all(kafka_broker.bootstrap_servers, topic)
    assert len(messages) == n
    assert {p for p, _ in messages} == {0, 1, 2}

    with open(labels_path) as f:
        labels = list(csv.DictReader(f))
    assert len(labels) == report.labelled
    by_kind = {}
    for row in labels:
        by_kind.setdefault(row["kind"], set()).add(row["label"])
        key, value = messages[(int(row["partition"]), int(row["offset"]))]
        assert key.decode() == row["user_id"]
        event, reason, _ = classify(value)
        if row["kind"] == "anomaly":
            assert reason is None, "anomalous events are valid events"
            assert event["event_id"] == row["event_id"]
        else:
            assert reason is not None, (
                f"{row['label']} message was accepted: {value[:80]}"
            )
    assert by_kind["anomaly"] == set(ANOMALY_TYPES)
    assert by_kind["malformed"] == set(MALFORMED_KINDS)

    labelled = {(int(r["partition"]), int(r["offset"])) for r in labels}
    for (partition, offset), (key, value) in messages.items():
        if (partition, offset) in labelled:
            continue
        event, reason, detail = classify(value)
        assert reason is None, (reason, detail)
        assert set(REQUIRED_FIELDS) <= set(event)
        assert key.decode() == event["user_id"]
        raw = json.loads(value)
        assert not {"label", "anomaly", "anomaly_type", "kind"} & set(raw)


def test_generator_is_seeded_and_users_keep_habits():
    def take(seed, k=3000):
        it = iter(EventGenerator(seed=seed, n_users=50, anomaly_rate=0.0))
        return [next(it) for _ in range(k)]

    a, b, c = take(1), take(1), take(2)
    assert [m.value for m in a] == [m.value for m in b]
    assert [m.value for m in a] != [m.value for m in c]
    countries: dict[str, set] = {}
    for m in a:
        e = json.loads(m.value)
        countries.setdefault(e["user_id"], set()).add(e["country"])
    # Without anomalies every user stays in their home country.
    assert all(len(c) == 1 for c in countries.values())


def test_anomaly_generate_twice_adds_new_events_that_continue_in_time(
    kafka_broker, topic, tmp_path, monkeypatch
):
    """As the README suggests with the UI open: the second run must bring new events (a
    fresh seed) of the same users, after the first run's events (no late arrivals).

    The "fresh" seeds and the first start are pinned so the draw is the same every run:
    how many active users two 600-event runs share varies with them (9 to 20)."""
    bootstrap = kafka_broker.bootstrap_servers
    seeds = iter([1_001, 1_002])
    monkeypatch.setattr(generator, "fresh_seed", lambda: next(seeds))

    def generate():
        before = set(consume_all(bootstrap, topic)) if runs else set()
        argv = ["--events", "600", "--bootstrap", bootstrap, "--topic", topic]
        if not runs:
            argv += ["--start", "2026-11-02T09:00:00+00:00"]
        assert main([*argv, "--labels", str(tmp_path / "labels.csv")]) == 0
        new = consume_all(bootstrap, topic)
        events = []
        for key in set(new) - before:
            event, reason, _ = classify(new[key][1])
            if reason is None:
                events.append(event)
        runs.append(events)

    runs: list[list[dict]] = []
    generate()
    generate()
    first, second = runs
    assert len(first) == len(second) == 600
    assert not {e["event_id"] for e in first} & {e["event_id"] for e in second}
    assert min(e["event_ts"] for e in second) > max(e["event_ts"] for e in first)

    # the same people: a user's home country and devices carry over between the runs
    def habits(events):
        out = {}
        for e in events:
            out.setdefault(e["user_id"], set()).add((e["country"], e["user_agent"]))
        return out

    before, after = habits(first), habits(second)
    shared = before.keys() & after.keys()
    kept = sum(bool(before[u] & after[u]) for u in shared)
    # Over 30 draws the same population kept >= 2/3 of the shared users' habits, a
    # fresh population (another --population-seed) at most 1/4.
    assert len(shared) >= 5 and kept >= 0.6 * len(shared), (kept, len(shared))


def test_anomaly_rate_is_respected():
    gen = EventGenerator(seed=3, anomaly_rate=0.02)
    it = iter(gen)
    msgs = [next(it) for _ in range(50_000)]
    share = sum(m.label is not None for m in msgs) / len(msgs)
    assert 0.015 < share < 0.025


def test_start_twice_is_harmless_and_stop_leaves_nothing(tmp_path):
    # A cluster id starting with "-" once broke formatting (argparse took it for a flag).
    broker = LocalKafkaBroker(
        port=free_port(),
        controller_port=free_port(),
        data_dir=tmp_path / "k",
        cluster_id="-" + "A" * 21,
    )
    broker.start()
    pid = broker.pid()
    try:
        assert broker.start().pid() == pid
        assert create_topic(broker.bootstrap_servers, "x", 2) is True
        assert create_topic(broker.bootstrap_servers, "x", 2) is False
    finally:
        assert broker.stop() is True
    assert broker.pid() is None
    leftover = subprocess.run(
        ["pgrep", "-f", str(broker.data_dir)], capture_output=True, check=False
    )
    assert leftover.stdout == b"", "a broker process survived stop"
    assert broker.stop() is False


def test_port_in_use_gives_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        broker = LocalKafkaBroker(
            port=port, controller_port=free_port(), data_dir=tmp_path
        )
        with pytest.raises(
            BrokerError, match=f"Port {port} on 127.0.0.1 is already in use"
        ):
            broker.start()
    assert broker.pid() is None
