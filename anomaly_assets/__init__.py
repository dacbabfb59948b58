"""Kafka user-activity events to explained, evaluated anomalies in a Delta lakehouse."""
