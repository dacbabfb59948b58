"""The Delta IO manager round-trips Spark DataFrames, and a second Delta implementation agrees."""

from datetime import datetime, timedelta
from itertools import pairwise

import deltalake
import pytest
from dagster import AssetIn, asset, materialize

from anomaly_assets.io_managers import DeltaIOManager
from anomaly_assets.io_managers.delta import batch_predicate, write_delta

ROWS = [(1, "a", 1.5, "b1"), (2, "b", None, "b1"), (3, "c", -2.0, "b2")]
SCHEMA = "id long, name string, score double, batch_id string"


def _sorted(rows):
    return sorted(rows, key=lambda r: r[0])


def test_round_trip_through_io_manager_and_deltalake(spark, lakehouse):
    seen = {}

    @asset(metadata={"delta/write_mode": "overwrite"})
    def people():
        return spark.createDataFrame(ROWS, SCHEMA)

    @asset(ins={"people": AssetIn()})
    def people_count(people) -> None:
        seen["rows"] = [tuple(r) for r in people.collect()]

    result = materialize(
        [people, people_count],
        resources={
            "io_manager": DeltaIOManager(lakehouse=lakehouse),
            "lakehouse": lakehouse,
        },
    )
    assert result.success
    assert _sorted(seen["rows"]) == ROWS

    table = deltalake.DeltaTable(lakehouse.path("people"))
    data = table.to_pyarrow_table().to_pylist()
    assert (
        _sorted((r["id"], r["name"], r["score"], r["batch_id"]) for r in data) == ROWS
    )
    assert table.version() == 0

    meta = result.asset_materializations_for_node("people")[0].metadata
    assert meta["dagster/row_count"].value == 3
    assert meta["delta_version"].value == 0
    assert meta["rows_written"].value == 3
    assert meta["dagster/uri"].value == lakehouse.path("people")
    preview = meta["preview"].value.splitlines()
    assert preview[0] == "| id | name | score | batch_id |" and len(preview) == 2 + 3
    columns = {c.name: c.type for c in meta["dagster/column_schema"].schema.columns}
    assert columns == {
        "id": "bigint",
        "name": "string",
        "score": "double",
        "batch_id": "string",
    }


def test_a_write_finds_its_own_commits_by_their_tag(spark, tmp_path):
    """The metadata of a tagged write covers its commits only: not the commits before it,
    nor a later writer's (here, the same session's next write)."""
    from anomaly_assets.core import delta_sql
    from anomaly_assets.io_managers.delta import delta_table_metadata

    path = str(tmp_path / "tagged")
    rows = spark.createDataFrame(ROWS, SCHEMA)
    write_delta(rows, path, "append")
    tag = delta_sql.tag_commits(spark)
    write_delta(rows.withColumn("id", rows.id + 10), path, "append", exists=True)
    later = delta_sql.tag_commits(spark)
    write_delta(rows.withColumn("id", rows.id + 20), path, "append", exists=True)
    mine = delta_table_metadata(spark, path, tag=tag)
    assert (mine["delta_first_version_written"], mine["delta_version_written"]) == (
        1,
        1,
    )
    assert mine["rows_written"] == 3 and mine["delta_operation"] == "WRITE"
    assert (mine["delta_version"], mine["dagster/row_count"]) == (2, 9)
    theirs = delta_table_metadata(spark, path, tag=later)
    assert (theirs["delta_first_version_written"], theirs["delta_version_written"]) == (
        2,
        2,
    )


def test_row_count_follows_the_commits_without_counting_the_table(spark, lakehouse):
    """After the first write, dagster/row_count is the last count plus what each commit
    since added and removed (appends, MERGEs, an OPTIMIZE between): the same as counting,
    without a count; a table changed in a way its metrics do not tell is counted again."""
    from dagster import DagsterInstance

    from anomaly_assets.core import delta_sql, spark_actions

    spark_actions.install()
    batches = iter(
        [
            [(1, "a", 1.0, "b1"), (2, "b", 1.0, "b1")],
            [(2, "b", 2.0, "b1"), (3, "c", 1.0, "b2"), (4, "d", 1.0, "b2")],
            [(5, "e", 1.0, "b3")],
            [(1, "a", 1.0, "b1")],  # stored as it is: nothing to commit
        ]
    )

    @asset(
        metadata={
            "delta/write_mode": "merge_upsert",
            "delta/merge_keys": ["id"],
            "delta/compare_columns": ["score"],
        }
    )
    def scores():
        return spark.createDataFrame(next(batches), SCHEMA)

    path = lakehouse.path("scores")
    resources = {"io_manager": DeltaIOManager(lakehouse=lakehouse)}
    with DagsterInstance.ephemeral() as instance:
        counted = []
        for step in range(4):
            if step == 2:  # another writer compacts the table in between
                spark.sql(f"OPTIMIZE {delta_sql.ref(path)}")
            before = spark_actions.snapshot()
            result = materialize([scores], resources=resources, instance=instance)
            counts = spark_actions.by_kind(spark_actions.since(before))["count"]
            counted.append(counts)
            meta = result.asset_materializations_for_node("scores")[0].metadata
            assert meta["dagster/row_count"].value == len(
                deltalake.DeltaTable(path).to_pyarrow_table()
            )
        assert meta["dagster/row_count"].value == 5
        assert counted[0] == 1 and counted[1:] == [0, 0, 0], counted
        # a delete the materialisations do not know of: counted again, and right
        spark.sql(f"DELETE FROM {delta_sql.ref(path)} WHERE id = 5")
        batches = iter([[(6, "f", 1.0, "b4")]])
        result = materialize([scores], resources=resources, instance=instance)
        meta = result.asset_materializations_for_node("scores")[0].metadata
        assert meta["dagster/row_count"].value == 5


def _table(spark, path):
    return sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())


def test_replace_batch_twice_leaves_the_table_unchanged(spark, tmp_path):
    path = str(tmp_path / "t")
    write_delta(spark.createDataFrame(ROWS, SCHEMA), path, "append")
    batch = spark.createDataFrame([(2, "B", 9.0, "b1"), (4, "d", 0.0, "b1")], SCHEMA)
    write_delta(batch, path, "replace_batch")
    once = _table(spark, path)
    assert once == [(2, "B", 9.0, "b1"), (3, "c", -2.0, "b2"), (4, "d", 0.0, "b1")]
    write_delta(batch, path, "replace_batch")
    assert _table(spark, path) == once
    # deltalake sees the same final state
    rows = deltalake.DeltaTable(path).to_pyarrow_table().to_pylist()
    assert sorted((r["id"], r["name"], r["score"], r["batch_id"]) for r in rows) == once


def test_append_and_merge_insert(spark, tmp_path):
    path = str(tmp_path / "m")
    df = spark.createDataFrame(ROWS, SCHEMA)
    write_delta(df, path, "merge_insert", merge_keys=["id"], merge_range_column="id")
    write_delta(df, path, "merge_insert", merge_keys=["id"], merge_range_column="id")
    assert _table(spark, path) == _sorted(ROWS)
    more = spark.createDataFrame([(3, "dup", 0.0, "b3"), (5, "e", 1.0, "b3")], SCHEMA)
    write_delta(more, path, "merge_insert", merge_keys=["id"])
    assert [r[0] for r in _table(spark, path)] == [1, 2, 3, 5]
    assert {r[0]: r[1] for r in _table(spark, path)}[3] == "c", "existing rows are kept"
    write_delta(more, path, "append")
    assert len(_table(spark, path)) == 6


def test_merge_insert_appends_new_ranges_and_merges_overlapping_ones(spark, tmp_path):
    """Per partition: a range with no stored row is appended (no MERGE); a retried range
    that overlaps stored rows is merged, adding only the missing offsets."""
    from delta.tables import DeltaTable

    path = str(tmp_path / "offsets")
    schema = "partition int, offset long, v string"

    def write(rows):
        df = spark.createDataFrame(rows, schema)
        write_delta(
            df,
            path,
            "merge_insert",
            merge_keys=["partition", "offset"],
            merge_range_column="offset",
        )
        return DeltaTable.forPath(spark, path).history(1).first()["operation"]

    def rows(p, offsets, v="x"):
        return [(p, o, v) for o in offsets]

    write(rows(0, range(10)) + rows(1, range(10)))
    # Partition 2 starts at offset 0 too: offsets alone would overlap, partitions do not.
    assert write(rows(0, range(10, 15)) + rows(2, range(5))) == "WRITE"
    assert write(rows(0, range(12, 18), v="retry")) == "MERGE"
    stored = [(r[0], r[1], r[2]) for r in _table(spark, path)]
    assert len(stored) == len({(p, o) for p, o, _ in stored}) == 10 + 18 + 5
    assert {(p, o): v for p, o, v in stored}[(0, 12)] == "x", "stored rows are kept"
    version = DeltaTable.forPath(spark, path).history(1).first()["version"]
    write([])  # an empty source commits nothing
    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == version


def test_merge_upsert_appends_new_batches_and_merges_corrections(spark, tmp_path):
    """A new batch is appended in its own files; only the corrected rows of stored batches
    are merged, so no file mixes batches. The metadata covers both commits; a retry of the
    same rows is one MERGE that changes nothing."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable as ReadTable

    from anomaly_assets.io_managers.delta import delta_table_metadata

    path = str(tmp_path / "upsert")
    schema = "event_id string, event_time timestamp, batch_id string, score double"
    t0 = datetime(2026, 11, 1, 12)

    def rows(batch, ids, score=0.0):
        return [(f"e{i}", t0 + timedelta(minutes=i), batch, score) for i in ids]

    def upsert(data):
        before = DeltaTable.forPath(spark, path).history(1).first()["version"]
        write_delta(
            spark.createDataFrame(data, schema),
            path,
            "merge_upsert",
            merge_keys=["event_id"],
            compare_columns=["score"],
            prune_days_column="event_time",
        )
        return before, delta_table_metadata(spark, path, before)

    from delta.tables import DeltaTable

    write_delta(spark.createDataFrame(rows("b1", range(10)), schema), path, "append")
    correction = rows("b1", [8, 9], score=1.0) + rows("b2", range(10, 30))
    before, meta = upsert(correction)
    assert meta["delta_operation"] == "WRITE + MERGE"
    assert meta["delta_first_version_written"] == before + 1
    assert meta["delta_version_written"] == before + 2
    assert meta["rows_written"] == 20 and meta["rows_updated"] == 2
    table = ReadTable(path)
    per_file = [
        set(pq.read_table(uri.removeprefix("file://"))["batch_id"].to_pylist())
        for uri in table.file_uris()
    ]
    assert all(len(batches) == 1 for batches in per_file), per_file
    stored = {r["event_id"]: r["score"] for r in table.to_pyarrow_table().to_pylist()}
    assert len(stored) == 30 and stored["e9"] == 1.0 and stored["e7"] == 0.0

    version = DeltaTable.forPath(spark, path).history(1).first()["version"]
    _, again = upsert(correction)  # a retry: b2 is stored now, nothing changes
    assert again["delta_operation"] == "none (nothing to write)"
    assert again["rows_written"] == again["rows_updated"] == again["rows_copied"] == 0
    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == version

    # Re-sending a stored row beside one changed row rewrites only the changed row's file.
    _, meta = upsert(rows("b2", [10], score=2.0) + rows("b1", range(8)))
    assert meta["rows_updated"] == 1 and meta["rows_written"] == 0
    b2_rows = sum(1 for v in per_file if v == {"b2"})
    assert meta["rows_copied"] <= 20 - 1 and b2_rows >= 1


def test_appends_are_clustered_by_event_time_so_a_correction_rewrites_one_file(
    spark, tmp_path, monkeypatch
):
    """A large batch lands in files over disjoint event-time spans, so correcting its last
    rows rewrites the one file holding them, not every file of the batch."""
    import random

    import pyarrow as pa
    from delta.tables import DeltaTable
    from deltalake import DeltaTable as ReadTable

    from anomaly_assets.io_managers import delta
    from anomaly_assets.io_managers.delta import delta_table_metadata

    monkeypatch.setattr(delta, "APPEND_FILE_ROWS", 100)
    path = str(tmp_path / "clustered")
    schema = "event_id string, event_time timestamp, batch_id string, score double"
    t0 = datetime(2026, 11, 1, 12)
    first = [(f"e{i}", t0 + timedelta(seconds=i), "b1", 0.0) for i in range(1000)]
    random.Random(5).shuffle(first)  # arrival order is not event-time order

    def upsert(data):
        write_delta(
            spark.createDataFrame(data, schema).repartition(4),
            path,
            "merge_upsert",
            merge_keys=["event_id"],
            compare_columns=["score"],
            prune_days_column="event_time",
        )

    upsert(first)
    stats = pa.table(ReadTable(path).get_add_actions(flatten=True)).to_pylist()
    spans = sorted(
        (s["min.event_time"], s["max.event_time"], s["num_records"]) for s in stats
    )
    assert len(spans) == 10 and all(n <= 150 for *_, n in spans), spans
    assert all(a[1] < b[0] for a, b in pairwise(spans)), spans

    before = DeltaTable.forPath(spark, path).history(1).first()["version"]
    upsert([(f"e{i}", t0 + timedelta(seconds=i), "b1", 1.0) for i in (998, 999)])
    meta = delta_table_metadata(spark, path, before)
    assert meta["rows_updated"] == 2
    assert meta["rows_copied"] == spans[-1][2] - 2


def test_hour_partitions_bound_what_corrections_in_short_batches_rewrite(
    spark, tmp_path
):
    """Batches shorter than the lateness (10 minutes), each correcting the 25 newest stored
    rows. Unpartitioned, a rewritten file keeps the rows it copied and the next correction
    rewrites it again with more: the copy grows with every batch. Partitioned by hour, a
    correction copies at most the rows of the hours it touches."""
    from deltalake import DeltaTable as ReadTable

    from anomaly_assets.core.cursors import table_version
    from anomaly_assets.io_managers.delta import delta_table_metadata

    path = str(tmp_path / "hourly")
    schema = "event_id string, event_time timestamp, batch_id string, score double"
    t0 = datetime(2026, 11, 1)

    def row(i, score):
        return (f"e{i:03d}", t0 + timedelta(minutes=i), f"b{i // 10}", score)

    copied = []
    for b in range(16):
        new = [row(i, 0.0) for i in range(10 * b, 10 * b + 10)]
        fixes = [row(i, float(b)) for i in range(max(0, 10 * b - 25), 10 * b)]
        before = table_version(spark, path)
        write_delta(
            spark.createDataFrame(new + fixes, schema),
            path,
            "merge_upsert",
            merge_keys=["event_id"],
            compare_columns=["score"],
            prune_days_column="event_time",
        )
        copied.append(delta_table_metadata(spark, path, before)["rows_copied"])
    # Two hours at most (60 rows each), less the 25 rows updated.
    assert max(copied) <= 2 * 60 - 25, copied
    table = ReadTable(path)
    assert table.metadata().partition_columns == ["event_hour"]
    stored = {r["event_id"]: r for r in table.to_pyarrow_table().to_pylist()}
    for i in range(160):
        fixed_by = [b for b in range(16) if 10 * b - 25 <= i < 10 * b]
        assert stored[f"e{i:03d}"]["score"] == float(max(fixed_by, default=0))
        assert stored[f"e{i:03d}"]["event_hour"] == f"2026-11-01-{i // 60:02d}"


def test_batch_predicate_quotes_values():
    assert batch_predicate("batch_id", ["b2", "o'k"]) == "`batch_id` IN ('b2', 'o''k')"
    assert batch_predicate("n", [3, 1]) == "`n` IN (1, 3)"
    with pytest.raises(ValueError):
        batch_predicate("batch_id", [])


def test_missing_table_error_names_the_asset(spark, lakehouse):
    @asset(ins={"never_written": AssetIn()})
    def downstream(never_written) -> None:  # pragma: no cover - never runs
        pass

    from dagster import AssetKey, AssetSpec

    result = materialize(
        [AssetSpec(AssetKey("never_written")), downstream],
        resources={
            "io_manager": DeltaIOManager(lakehouse=lakehouse),
            "lakehouse": lakehouse,
        },
        raise_on_error=False,
        selection=[downstream],
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert (
        "never_written" in str(failure.to_string())
        and "materialise" in failure.to_string()
    )


def test_delta_sql_tells_a_missing_table_from_a_broken_one(spark, tmp_path):
    """No table (nothing there, or files that are not Delta) reads as absent; a Delta
    table it cannot read is an error, not "absent" (a write would otherwise start over)."""
    from anomaly_assets.core import delta_sql

    assert delta_sql.history(spark, str(tmp_path / "nothing")) == []
    spark.range(3).write.parquet(str(tmp_path / "parquet"))
    assert not delta_sql.exists(spark, str(tmp_path / "parquet"))

    odd = str(tmp_path / "a `quoted` name")  # the backticks are escaped in the SQL name
    spark.range(3).selectExpr("id", "id AS v").write.format("delta").save(odd)
    assert delta_sql.version(spark, odd) == 0
    source = spark.range(2, 5).selectExpr("id", "id * 10 AS v", "'new' AS extra")
    delta_sql.merge(spark, odd, source, "t.id = s.id", update_when="t.v <> s.v")
    assert delta_sql.version(spark, odd) == 1
    assert delta_sql.history(spark, odd, 1)[0]["operation"] == "MERGE"
    stored = {
        r["id"]: (r["v"], r["extra"])
        for r in spark.read.format("delta").load(odd).collect()
    }
    assert stored == {
        0: (0, None),
        1: (1, None),
        2: (20, "new"),
        3: (30, "new"),
        4: (40, "new"),
    }
    delta_sql.merge(
        spark,
        odd,
        spark.range(1).selectExpr("id"),
        "t.id = s.id",
        insert=False,
        delete=True,
    )
    assert sorted(r["id"] for r in spark.read.format("delta").load(odd).collect()) == [
        1,
        2,
        3,
        4,
    ]
    with pytest.raises(ValueError, match="at least one"):
        delta_sql.merge(spark, odd, source, "t.id = s.id", insert=False)

    log = tmp_path / "a `quoted` name" / "_delta_log" / "00000000000000000000.json"
    log.write_text("{not json")
    with pytest.raises(Exception) as broken:
        delta_sql.history(spark, odd)
    assert not delta_sql._absent(broken.value)
