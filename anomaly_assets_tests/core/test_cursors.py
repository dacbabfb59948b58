"""Change cursors on a real Delta table: a table without Change Data Feed is refused with the
fix; a consumer's first read is the table's snapshot, its next reads only the new commits."""

import pytest

from anomaly_assets.core import cursors
from anomaly_assets.resources.lakehouse import LakehouseResource


def _append(spark, path, ids, cdf=None):
    df = spark.createDataFrame([(i, f"v{i}") for i in ids], "id long, v string")
    writer = df.write.format("delta").mode("append")
    if cdf is not None:
        writer = writer.option("delta.enableChangeDataFeed", cdf)
    writer.save(path)


def test_a_table_without_change_feed_is_refused_with_the_fix_then_read_from_a_snapshot(
    spark, spark_resource, tmp_path
):
    lake = LakehouseResource(root=str(tmp_path / "lake"), spark=spark_resource)
    path = lake.path("legacy")
    _append(spark, path, range(3), cdf="false")  # as an older version created it
    _append(spark, path, range(3, 5))
    with pytest.raises(cursors.ChangeFeedMissing) as refused:
        lake.pending_changes("reader", "legacy")
    message = str(refused.value)
    assert path in message and "delta.enableChangeDataFeed" in message
    # The fix the message gives, as given.
    fix = next(line.strip() for line in message.splitlines() if "ALTER" in line)
    spark.sql(fix)

    first = lake.pending_changes("reader", "legacy")
    assert first.cursor.version is None
    rows = first.changes.collect()
    assert sorted(r["id"] for r in rows) == list(range(5))
    assert {r["_change_type"] for r in rows} == {"insert"}
    assert {r["_commit_version"] for r in rows} == {first.through}
    lake.save_cursor("reader", "legacy", first.through)

    _append(spark, path, [5, 6])
    after = lake.pending_changes("reader", "legacy")
    assert after.cursor.version == first.through
    assert sorted(r["id"] for r in after.changes.collect()) == [5, 6]
    lake.save_cursor("reader", "legacy", after.through)
    assert lake.pending_changes("reader", "legacy").changes is None
