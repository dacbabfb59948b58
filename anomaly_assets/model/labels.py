"""The generator's ground truth: which events are anomalies, of which type (training
reports per-type quality with it, the evaluation risk agreement)."""

from pathlib import Path


def load_labels(path: str) -> dict[str, str]:
    """event_id -> anomaly type from the generator's labels file ({} when absent)."""
    import pandas as pd

    if not Path(path).exists():
        return {}
    labels = pd.read_csv(path, usecols=["event_id", "kind", "label"], dtype=str)
    labels = labels[labels["kind"] == "anomaly"].dropna(subset=["event_id"])
    return dict(zip(labels["event_id"], labels["label"]))
