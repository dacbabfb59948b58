"""Declared streams: one folder per stream, each with a defs.yaml of type
anomaly_assets.components.AnomalyPipeline (see docs/streams.md)."""
