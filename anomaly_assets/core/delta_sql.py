"""Delta operations as SQL, so they run the same in classic Spark and over Spark Connect.

delta-spark's Python ``DeltaTable`` needs, over Spark Connect, the Delta Connect plugin on
the server; that plugin is not published for Spark 4.2. ``DESCRIBE DETAIL``, ``DESCRIBE
HISTORY`` and ``MERGE INTO`` (deletes too, as a MERGE clause) are plain SQL that any Spark
with Delta's SQL extension (a local server, a cluster, Databricks) runs.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

#: Error conditions meaning "no Delta table at that path" (not "cannot read it").
_NO_TABLE = (
    "DELTA_MISSING_DELTA_TABLE",
    "DELTA_TABLE_NOT_FOUND",
    "DELTA_PATH_DOES_NOT_EXIST",
    "PATH_NOT_FOUND",
    "DELTA_EMPTY_DIRECTORY",
)


def literal(value: Any) -> str:
    """``value`` as a Spark SQL literal: numbers as they are, datetimes as TIMESTAMP (give
    them a zone: a naive one is read in the session's UTC), anything else as a string with
    backslashes and quotes escaped (Spark reads a backslash in a literal as an escape)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP'{value.isoformat()}'"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


def in_list(column: str, values) -> str:
    """SQL ``column IN (...)`` over ``values`` as literals (FALSE-like for none)."""
    return f"{column} IN ({', '.join(literal(v) for v in values) or 'NULL'})"


def ref(path: str) -> str:
    """The SQL name of the path-based table at ``path``."""
    return "delta.`" + path.replace("`", "``") + "`"


def _absent(exc: Exception) -> bool:
    from pyspark.errors import AnalysisException

    if not isinstance(exc, AnalysisException):
        return False
    condition = exc.getCondition() or ""
    return condition.startswith(_NO_TABLE) or "is not a Delta table" in str(exc)


#: Paths this process has seen a Delta table at. A table does not stop existing while the
#: pipeline runs, so each is looked up once, not before every read and write.
_EXISTING: set[str] = set()


def history(spark, path: str, limit: int | None = None) -> list:
    """The table's newest commits first (all of them without ``limit``); [] when there is
    no Delta table at ``path``."""
    query = f"DESCRIBE HISTORY {ref(path)}" + (f" LIMIT {int(limit)}" if limit else "")
    try:
        rows = spark.sql(query).collect()
    except Exception as exc:
        if _absent(exc):
            return []
        raise
    if rows:
        _EXISTING.add(path)
    return rows


def version(spark, path: str) -> int | None:
    """The table's current version, None if there is no Delta table at ``path``."""
    last = history(spark, path, 1)
    return last[0]["version"] if last else None


def exists(spark, path: str) -> bool:
    return path in _EXISTING or version(spark, path) is not None


def created(path: str) -> None:
    """Record that this process wrote the table at ``path``: it exists from now on."""
    _EXISTING.add(path)


#: Delta writes this session setting into each commit's ``userMetadata``.
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


def tag_commits(spark) -> str:
    """A fresh tag that the session's next commits carry as their ``userMetadata``, so a
    writer finds its own commits in the history afterwards without looking the version up
    before it writes (a setting, not a query)."""
    tag = f"anomaly_assets:{uuid.uuid4().hex}"
    spark.conf.set(USER_METADATA, tag)
    return tag


def first_row(spark, path: str):
    """The table's first row, None when it is empty or there is no table at ``path`` (one
    query, without looking the table up first)."""
    try:
        row = spark.read.format("delta").load(path).first()
    except Exception as exc:
        if _absent(exc):
            return None
        raise
    _EXISTING.add(path)
    return row


def detail(spark, path: str):
    """``DESCRIBE DETAIL``'s row: format, partition columns, files, size, properties."""
    return spark.sql(f"DESCRIBE DETAIL {ref(path)}").first()


def _view(spark, source) -> str:
    """Register ``source`` under a fresh session-scoped name (dropped by the caller)."""
    name = f"_anomaly_src_{uuid.uuid4().hex}"
    source.createOrReplaceTempView(name)
    return name


def merge(
    spark,
    path: str,
    source,
    condition: str,
    *,
    update_when: str | None = None,
    insert: bool = True,
    delete: bool = False,
) -> None:
    """``MERGE INTO`` the table at ``path`` (alias ``t``) from ``source`` (alias ``s``):
    update all columns of matched rows where ``update_when`` holds, delete matched rows
    with ``delete``, insert unmatched rows with ``insert``. New source columns are added to
    the table (schema evolution)."""
    if not (update_when or insert or delete):
        raise ValueError("a MERGE needs at least one of update_when, insert, delete")
    clauses = []
    if update_when:
        clauses.append(f"WHEN MATCHED AND ({update_when}) THEN UPDATE SET *")
    if delete:
        clauses.append("WHEN MATCHED THEN DELETE")
    if insert:
        clauses.append("WHEN NOT MATCHED THEN INSERT *")
    view = _view(spark, source)
    try:
        spark.sql(
            f"MERGE WITH SCHEMA EVOLUTION INTO {ref(path)} AS t USING {view} AS s "
            f"ON {condition} " + " ".join(clauses)
        )
    finally:
        spark.catalog.dropTempView(view)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def collect_utc(df, time_columns=()) -> list[dict]:
    """``df``'s rows as dicts, ``time_columns`` as UTC datetimes: collect() would give
    naive datetimes in the Python process's own time zone, which need not be the
    session's UTC (the times leave Spark as microseconds since the epoch)."""
    from pyspark.sql import functions as F

    present = [c for c in time_columns if c in df.columns]
    rows = df.withColumns({c: F.unix_micros(c) for c in present}).collect()
    return [
        {
            **r.asDict(recursive=True),
            **{
                c: None if r[c] is None else _EPOCH + timedelta(microseconds=r[c])
                for c in present
            },
        }
        for r in rows
    ]
