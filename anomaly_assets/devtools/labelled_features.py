"""Generated streams featurised as silver features them, with each event's label: what the
detection floors and the learning bench fit and score on, without a broker or Delta."""

import itertools
from datetime import datetime

import pandas as pd

from anomaly_assets.ingestion import bronze
from anomaly_assets.silver.features import FEATURE_COLUMNS, silver_rows

#: The Kafka timestamp given to every message: after every generated event, so none is
#: rejected as from the future.
KAFKA_TS = datetime(2027, 1, 1)


def generated(mix, events: int, seed: int, anomaly_rate: float, start=None):
    """(messages, the mix) of ``events`` messages of ``mix`` (a generator class) over the
    population of seed 7."""
    stream = mix(seed=seed, population_seed=7, anomaly_rate=anomaly_rate, start=start)
    return list(itertools.islice(stream, events)), stream


def labelled_features(spark, messages) -> pd.DataFrame:
    """Silver's feature rows of ``messages`` in event time order: event_id, event_time,
    user_id, event_type, the features, ``label`` (the anomaly type, None when normal) and
    ``episode`` (the labelled episode's id), validated and featurised in one pass so that
    every event has its history."""
    labelled = [m.label for m in messages if m.label and m.label.kind == "anomaly"]
    raw = spark.createDataFrame(
        [(m.key, m.value, "t", 0, i, KAFKA_TS) for i, m in enumerate(messages)],
        bronze.KAFKA_SOURCE_SCHEMA,
    )
    good, _ = bronze.split(bronze.validate(bronze.stage(raw), "b1"))
    rows = (
        silver_rows(good)
        .select("event_id", "event_time", "user_id", "event_type", *FEATURE_COLUMNS)
        .toPandas()
        .sort_values("event_time", kind="stable")
        .reset_index(drop=True)
    )
    rows["label"] = rows["event_id"].map({lab.event_id: lab.label for lab in labelled})
    rows["episode"] = rows["event_id"].map(
        {lab.event_id: lab.episode_id for lab in labelled}
    )
    return rows


def split_at(rows: pd.DataFrame, start: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows before ``start``, rows from it on)."""
    times = pd.to_datetime(rows["event_time"], utc=True)
    later = (times >= pd.Timestamp(start)).to_numpy()
    return rows[~later], rows[later]
