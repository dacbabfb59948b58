"""Kafka to bronze: the offsets sensor, batch planning, the offset ledger, the event contract's validation, and bronze's assets and checks."""
