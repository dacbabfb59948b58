"""The feature catalogue tells the truth about each feature: the columns it reads (its
lineage and what a stream's contract must carry) and the order the model sees."""

import itertools
import random
from datetime import datetime

import pytest

from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.ingestion import bronze as lib
from anomaly_assets.silver.catalogue import (
    CATALOGUE,
    COLUMN_ORDER,
    FEATURE_INPUTS,
    THREAT_FEATURES,
    in_column_order,
)
from anomaly_assets.silver.catalogue.feature import Feature
from anomaly_assets.silver.features import EVENT_COLUMNS, silver_rows

#: Every event column but the event's identity, user, time and Kafka position (features
#: are per user in event-time order, ties broken by position): each is changed in turn.
INPUT_COLUMNS = tuple(
    c
    for c in EVENT_COLUMNS
    if c not in ("event_id", "user_id", "event_time", "topic", "partition", "offset")
)
#: Columns that also get a copy where every value is one never seen before (each row a
#: new place); every column gets a copy shuffled across rows.
PLACE_COLUMNS = ("country", "ip_address", "device_type", "user_agent")


def _feature(name: str) -> Feature:
    return Feature(name, "doc", (), lambda: None)


def test_a_feature_missing_from_the_order_or_declared_twice_stops_the_import():
    a, b = _feature("a"), _feature("b")
    assert [f.name for f in in_column_order([b, a], ("a", "b"))] == ["a", "b"]
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        in_column_order([a, b], ("a",))
    with pytest.raises(ValueError, match=r"unknown \['c'\]"):
        in_column_order([a, b], ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"declared twice: \['a'\]"):
        in_column_order([a, _feature("a"), b], ("a", "b"))
    with pytest.raises(ValueError, match="once"):
        in_column_order([a, b], ("a", "b", "a"))


def test_each_threat_forest_reads_its_own_features_only():
    owned = [f for features in THREAT_FEATURES.values() for f in features]
    assert len(owned) == len(set(owned)) and set(owned) <= set(COLUMN_ORDER)
    assert [f.stage for f in CATALOGUE if f.stage not in (0, 1, 2)] == []


@pytest.fixture(scope="module")
def generated(spark):
    """A few busy users of the project's generator, anomalies included, as bronze rows."""
    gen = EventGenerator(seed=11, n_users=6, anomaly_rate=0.2, sessions_per_minute=0.3)
    messages = list(itertools.islice(gen, 1000))
    raw = spark.createDataFrame(
        [
            (m.key, m.value, "t", 0, i, datetime(2027, 1, 1))
            for i, m in enumerate(messages)
        ],
        lib.KAFKA_SOURCE_SCHEMA,
    )
    good, _ = lib.split(lib.validate(lib.stage(raw), "b1"))
    assert good.count() > 900
    return good.select(*EVENT_COLUMNS).localCheckpoint()


def test_a_feature_changes_with_its_declared_inputs_only(spark, generated):
    """Each copy of the events changes one input column (a copy per column, its users
    renamed so copies share no window). A feature must give the same values as
    on the original events unless it declares that column; and each declared column must
    change the feature somewhere, or the lineage names a column the feature ignores."""
    from pyspark.sql import functions as F

    rows = generated.collect()
    copies = {}
    for column in INPUT_COLUMNS:
        shuffled = [r[column] for r in rows]
        random.Random(column).shuffle(shuffled)
        copies[f"{column}|shuffled"] = shuffled
        if column in PLACE_COLUMNS:
            copies[f"{column}|fresh"] = [
                None if r[column] is None else f"{r[column]}~{i}"
                for i, r in enumerate(rows)
            ]
    union = generated
    for name, values in copies.items():
        column = name.split("|")[0]
        changed = [
            {
                **r.asDict(),
                column: v,
                "user_id": f"{name}|{r['user_id']}",
                "event_id": f"{name}|{r['event_id']}",
            }
            for r, v in zip(rows, values, strict=True)
        ]
        union = union.unionByName(spark.createDataFrame(changed, generated.schema))
    features = silver_rows(union).select(
        F.when(F.col("event_id").contains("|"), F.split("event_id", r"\|")[0])
        .otherwise("")
        .alias("column"),
        F.element_at(F.split("event_id", r"\|"), -1).alias("event"),
        *FEATURE_INPUTS,
    )
    rows_of: dict[str, list[dict]] = {}
    for r in features.collect():
        rows_of.setdefault(r["column"], []).append(r.asDict())
    original = {r["event"]: r for r in rows_of.pop("")}
    assert set(rows_of) == set(INPUT_COLUMNS)
    undeclared, unused = set(), set()
    for column, changed_rows in rows_of.items():
        assert len(changed_rows) == len(original) * len(
            [n for n in copies if n.startswith(f"{column}|")]
        )
        for feature, inputs in FEATURE_INPUTS.items():
            changed = any(
                r[feature] != pytest.approx(original[r["event"]][feature], nan_ok=True)
                for r in changed_rows
            )
            if changed and column not in inputs:
                undeclared.add((feature, column))
            if not changed and column in inputs:
                unused.add((feature, column))
    assert not undeclared, (
        f"features that read a column they do not declare: {undeclared}"
    )
    assert not unused, f"declared inputs that never changed the feature: {unused}"
