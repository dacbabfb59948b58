"""Small helpers shared by tests."""

from confluent_kafka import Consumer, TopicPartition

from anomaly_assets.lib.offsets import fetch_offsets


def consume_all(
    bootstrap: str, topic: str
) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    """Every message of ``topic`` keyed by (partition, offset), read by explicit assignment."""
    starts, ends = fetch_offsets({"bootstrap.servers": bootstrap}, topic, 10)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-reader",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
    out: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    want = sum(ends[p] - starts[p] for p in ends)
    while len(out) < want:
        msg = consumer.poll(10)
        assert msg is not None, f"timed out after {len(out)} of {want} messages"
        assert msg.error() is None, msg.error()
        out[(msg.partition(), msg.offset())] = (msg.key(), msg.value())
    consumer.close()
    return out
