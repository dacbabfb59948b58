"""Change cursors: each incremental step reads only the upstream commits it has not consumed.

A step (silver, gold, enrichment, evaluation) records, per upstream Delta table, the last
table version it consumed, plus any state it needs to redo its work exactly (silver keeps
its watermark and the profile version it folded into). Each consumer's record is a one-row
Delta table under ``pipeline_cursors/<consumer>``, so steps never conflict with each other.

The next run reads the upstream's Change Data Feed from that version + 1 to the version it
sees at start: its cost follows the batch, never the table. The cursor is written after
the step's outputs, so a crash in between makes the retry read the same commits again; every
step's writes are MERGEs that converge, so nothing lands twice.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from anomaly_assets.core import delta_sql

CURSOR_TABLE = "pipeline_cursors"
CURSOR_SCHEMA = (
    "consumer string, upstream string, upstream_version long, state string, "
    "updated_at timestamp"
)


@dataclass(frozen=True)
class Cursor:
    """What ``consumer`` has consumed of ``upstream``: versions up to ``version`` (None =
    nothing yet), and the consumer's own ``state`` at that point."""

    consumer: str
    upstream: str
    version: int | None = None
    state: dict = field(default_factory=dict)


def table_version(spark, path: str) -> int | None:
    """The Delta table's current version, or None if there is no table at ``path``."""
    return delta_sql.version(spark, path)


def cursor_path(root_path: str, consumer: str) -> str:
    return f"{root_path.rstrip('/')}/{CURSOR_TABLE}/{consumer}"


def read_cursor(spark, root_path: str, consumer: str, upstream: str) -> Cursor:
    row = delta_sql.first_row(spark, cursor_path(root_path, consumer))
    if row is None or row["upstream"] != upstream:
        return Cursor(consumer, upstream)
    return Cursor(consumer, upstream, row["upstream_version"], json.loads(row["state"]))


def write_cursor(spark, root_path: str, cursor: Cursor) -> None:
    """Replace the consumer's one-row table."""
    row = (
        cursor.consumer,
        cursor.upstream,
        cursor.version,
        json.dumps(cursor.state, sort_keys=True),
        datetime.now(UTC),
    )
    (
        spark.createDataFrame([row], CURSOR_SCHEMA)
        .write.format("delta")
        .mode("overwrite")
        .save(cursor_path(root_path, cursor.consumer))
    )
    delta_sql.created(cursor_path(root_path, cursor.consumer))


class ChangeFeedMissing(RuntimeError):
    """An upstream table without Delta's Change Data Feed: incremental steps cannot tell
    which rows its commits changed."""


#: Tables this process found recording their changes (the property stays set).
_WITH_CHANGE_FEED: set[str] = set()


def require_change_feed(spark, path: str) -> None:
    """Fail with what to do when the table at ``path`` does not record its changes.

    Checked before reading instead of left to Delta, whose error surfaces only at the first
    action and, once a table has commits without change data, cannot be repaired in place.
    Looked up once per table and process.
    """
    if path in _WITH_CHANGE_FEED:
        return
    properties = delta_sql.detail(spark, path)["properties"]
    if properties.get("delta.enableChangeDataFeed", "false").lower() != "true":
        raise ChangeFeedMissing(
            f"The Delta table at {path} has no Change Data Feed (its property "
            "delta.enableChangeDataFeed is not true): it was created by an older version "
            "of this project or by another writer. Each step reads only the commits it has "
            "not consumed, through that feed. Enable it, then run again:\n"
            f"  ALTER TABLE {delta_sql.ref(path)} SET TBLPROPERTIES "
            "(delta.enableChangeDataFeed = true)\n"
            "A step that has not consumed the table yet starts from its current snapshot."
        )
    _WITH_CHANGE_FEED.add(path)


#: The change feed's rows a consumer reads by default: what the commits left in the table.
NEW_IMAGES = ("insert", "update_postimage")


def read_changes(spark, path: str, after: int | None, through: int, kinds=NEW_IMAGES):
    """Rows of ``kinds`` (by default inserted or updated; add "delete" for the rows the
    commits removed) in ``path`` by commits after ``after`` up to ``through``
    (``_change_type`` and ``_commit_version`` kept, see ``latest_per_key``); None when there
    is no such commit. With ``after`` None (nothing consumed yet) the table as of
    ``through``, every row an insert: what ``latest_per_key`` would keep of the feed from
    version 0, without reading every commit since.
    Needs the table's Change Data Feed (on by default for tables this project creates)."""
    from pyspark.sql import functions as F

    start = 0 if after is None else after + 1
    if start > through:
        return None
    require_change_feed(spark, path)
    if after is None:
        return (
            spark.read.format("delta")
            .option("versionAsOf", through)
            .load(path)
            .withColumns(
                {
                    "_change_type": F.lit("insert"),
                    "_commit_version": F.lit(through).cast("long"),
                }
            )
        )
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", start)
        .option("endingVersion", through)
        .load(path)
    )
    return changes.filter(F.col("_change_type").isin(*kinds)).drop("_commit_timestamp")


@dataclass(frozen=True)
class Pending:
    """What a consumer has not consumed yet: upstream commits after ``cursor.version`` up to
    ``through``, as ``changes`` (None when there is none)."""

    cursor: Cursor
    through: int | None
    changes: object | None


def pending_changes(
    spark,
    root_path: str,
    consumer: str,
    upstream: str,
    upstream_path: str,
    kinds=NEW_IMAGES,
) -> Pending:
    cursor = read_cursor(spark, root_path, consumer, upstream)
    through = table_version(spark, upstream_path)
    changes = (
        None
        if through is None
        else read_changes(spark, upstream_path, cursor.version, through, kinds)
    )
    return Pending(cursor, through, changes)


def latest_per_key(changes, keys: list[str]):
    """One row per key: the image from the newest commit (a row updated twice in the range).
    A commit that deletes and re-inserts a key (an overwrite with replaceWhere) leaves
    its insert: the row is still there."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    newest = Window.partitionBy(*keys).orderBy(
        F.col("_commit_version").desc(), (F.col("_change_type") == "delete").asc()
    )
    return (
        changes.withColumn("_rn", F.row_number().over(newest))
        .filter("_rn = 1")
        .drop("_rn", "_commit_version")
    )
