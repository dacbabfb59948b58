"""What a check reads: the rows the checked asset's latest materialisation wrote.

A check after a write evaluates that write (its Delta commits' change feed: rows inserted or
updated), never the whole table, so its cost follows the batch. The commits are the ones the
IO manager recorded (``delta_first_version_written`` .. ``delta_version_written``); a
materialisation that wrote nothing leaves nothing to check.
"""

from dagster import AssetCheckResult, AssetKey

from anomaly_assets.lib.cursors import read_changes

#: Tags of a non-blocking check: it runs after the run's asset steps that are ready, so a
#: warning about one table does not delay the next table's rows (blocking checks keep their
#: place: downstream waits for them by design).
AFTER_ASSETS = {"dagster/priority": "-1"}

#: The result when the latest materialisation wrote no row.
NOTHING = AssetCheckResult(passed=True, metadata={"rows_checked": 0})


def written_rows(context, lakehouse, asset: AssetKey):
    """Rows the latest materialisation of ``asset`` inserted or updated, or None (its
    table is where the IO manager keeps it: ``<root>/<key path>``)."""
    event = context.instance.get_latest_materialization_event(asset)
    if event is None or event.asset_materialization is None:
        return None
    meta = event.asset_materialization.metadata
    last = meta.get("delta_version_written")
    if last is None:
        return None
    first = meta.get("delta_first_version_written", last)
    spark = lakehouse.spark_session
    changes = read_changes(
        spark, lakehouse.path(*asset.path), first.value - 1, last.value
    )
    return changes.drop("_commit_version", "_change_type")
