"""Column lineage where it is plain to state: columns carried from the layer before, and the
model's outputs from the features. Shown in the UI's column view of each asset."""

from collections.abc import Iterable, Mapping

from dagster import AssetKey, MetadataValue, TableColumnDep, TableColumnLineage


def column_lineage(
    upstream: str | AssetKey,
    carried: Iterable[str],
    derived: Mapping[str, Iterable[str]] | None = None,
) -> dict:
    """Output metadata: each carried column from its namesake upstream, each derived
    column from the upstream columns listed for it."""
    key = AssetKey.from_coercible(upstream)
    deps = {c: [TableColumnDep(key, c)] for c in carried}
    for column, sources in (derived or {}).items():
        deps[column] = [TableColumnDep(key, s) for s in sources]
    return {
        "dagster/column_lineage": MetadataValue.column_lineage(TableColumnLineage(deps))
    }
