"""optimize_tables_job on real Delta tables: small files compacted, rows unchanged, the
figures observed on the asset, and change-feed readers see no change."""

from dagster import AssetKey, DagsterInstance
from deltalake import DeltaTable

from anomaly_assets.definitions import build_resources, make_definitions


def _append_batches(spark, path, n_batches, rows_each):
    for b in range(n_batches):
        spark.createDataFrame(
            [(f"e{b}-{i}", b) for i in range(rows_each)], "event_id string, b int"
        ).coalesce(1).write.format("delta").mode("append").save(path)


def test_optimize_compacts_small_files_and_changes_no_row(spark, lakehouse):
    path = lakehouse.path("silver_events")
    _append_batches(spark, path, 6, 50)
    before = DeltaTable(path)
    assert len(before.file_uris()) == 6
    lakehouse.save_cursor("reader", "silver_events", before.version())

    defs = make_definitions(build_resources(lakehouse.spark, lakehouse=lakehouse))
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("optimize_tables_job").execute_in_process(
            instance=instance
        )
        assert result.success
        observed = instance.fetch_observations(AssetKey("silver_events"), limit=5)
        meta = observed.records[0].asset_observation.metadata
    assert meta["optimize/files_removed"].value == 6
    assert meta["optimize/files_added"].value == 1

    after = DeltaTable(path)
    assert len(after.file_uris()) == 1
    assert sorted(after.to_pyarrow_table()["event_id"].to_pylist()) == sorted(
        before.to_pyarrow_table()["event_id"].to_pylist()
    )
    pending = lakehouse.pending_changes("reader", "silver_events")
    assert pending.through == before.version() + 1
    assert pending.changes.count() == 0  # compaction is no data change

    # Nothing left to compact: a second run commits nothing.
    again = defs.resolve_job_def("optimize_tables_job").execute_in_process()
    assert again.success
    assert DeltaTable(path).version() == after.version()
