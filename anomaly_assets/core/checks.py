"""What a check reads, and how a table's checks report.

A check after a write evaluates that write (its Delta commits' change feed: rows inserted or
updated), never the whole table, so its cost follows the batch. The commits are the ones the
IO manager recorded (``delta_first_version_written`` .. ``delta_version_written``); a
materialisation that wrote nothing leaves nothing to check.

A table's checks are one op (a ``multi_asset_check``) that reads the written rows once and
answers every check from one aggregation: each check of its own would be a step of its own
and a query of its own, which a small batch pays in round trips, not rows.
"""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from anomaly_assets.core.cursors import read_changes


def result(
    spec: AssetCheckSpec,
    passed: bool,
    metadata: dict | None = None,
    severity: AssetCheckSeverity | None = None,
    description: str | None = None,
) -> AssetCheckResult:
    """``spec``'s result; unless ``severity`` says otherwise, a failed blocking spec is an
    error and a failed non-blocking one a warning."""
    if severity is None:
        severity = (
            AssetCheckSeverity.ERROR if spec.blocking else AssetCheckSeverity.WARN
        )
    return AssetCheckResult(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=passed,
        severity=severity,
        metadata=metadata or {},
        description=description,
    )


def by_name(*specs: AssetCheckSpec) -> dict[str, AssetCheckSpec]:
    """A check op's specs by check name, for its results to pick theirs."""
    return {s.name: s for s in specs}


def nothing_written(*specs: AssetCheckSpec) -> list[AssetCheckResult]:
    """The results when the latest materialisation wrote no row."""
    return [result(s, True, {"rows_checked": 0}) for s in specs]


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
