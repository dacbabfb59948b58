"""Delta Lake IO manager: Spark DataFrames in, Delta tables under the lakehouse root out.

An asset picks its write mode with definition metadata:

- ``delta/write_mode``: ``overwrite`` (default), ``append``, ``replace_batch``,
  ``merge_insert`` (insert rows whose ``delta/merge_keys`` are new; optional
  ``delta/merge_range_column`` bounds the target scan for file skipping, and a source
  whose ranges hold no stored row is appended instead) or ``merge_upsert`` (insert new
  keys, update matched rows whose ``delta/compare_columns`` differ: a corrected row is
  rewritten, an unchanged one is not).
- ``delta/prune_days_column``: a timestamp column; MERGEs then touch only the target files
  overlapping the output's span of it on each day (the cost of a MERGE follows the batch,
  not the table), and a new table is partitioned by its UTC hour (``HOUR_COLUMN``).
  With ``merge_upsert``, rows of batches the table holds no row of are appended (in files
  clustered on the column) and only the rest is merged (``split_stored_batches``), less
  the rows stored unchanged (``changed_rows``).
- ``delta/batch_column``: column naming the batch (default ``batch_id``) for ``replace_batch``.
- ``delta/partition_by``: list of partition columns, used when the table is created.

``replace_batch`` rewrites exactly the rows of the batches present in the output (or of the
``batch_id`` the asset puts in its output metadata) in one Delta transaction
(``replaceWhere``), so writing the same batch twice leaves the table as it was.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dagster import (
    ConfigurableIOManager,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)

from anomaly_assets.core import delta_sql, spark_actions
from anomaly_assets.core.pruning import event_spans, spans_predicate
from anomaly_assets.resources.lakehouse import LakehouseResource

WRITE_MODES = ("overwrite", "append", "replace_batch", "merge_insert", "merge_upsert")


def spark_schema_to_table_schema(schema) -> TableSchema:
    """A Spark StructType as Dagster's column schema (type names as Spark prints them)."""
    return TableSchema(
        columns=[
            TableColumn(
                name=f.name,
                type=f.dataType.simpleString(),
                description=(f.metadata or {}).get("comment"),
                constraints=TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema.fields
        ]
    )


def batch_predicate(column: str, batch_ids: list[Any]) -> str:
    """A replaceWhere predicate selecting exactly ``batch_ids``."""
    if not batch_ids:
        raise ValueError("replace_batch needs at least one batch id")
    return (
        f"`{column}` IN ({', '.join(delta_sql.literal(b) for b in sorted(batch_ids))})"
    )


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def merge_condition(
    keys: list[str], range_column: str | None = None, bounds=None
) -> str:
    """Join condition on ``keys``; optional bounds on ``range_column`` let Delta skip files."""
    cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    if range_column and bounds is not None and bounds[0] is not None:
        cond += f" AND t.`{range_column}` BETWEEN {bounds[0]} AND {bounds[1]}"
    return cond


def range_spans(source, keys: list[str], range_column: str) -> list[tuple]:
    """Per value of the other ``keys`` (a Kafka partition, say), the ``range_column`` span the
    source covers: ``[(group values..., low, high)]``."""
    from pyspark.sql import functions as F

    groups = [k for k in keys if k != range_column]
    rows = source.groupBy(*groups).agg(F.min(range_column), F.max(range_column))
    return [tuple(r) for r in rows.collect()]


def range_spans_predicate(
    keys: list[str], range_column: str, spans: list[tuple]
) -> str:
    """SQL selecting the rows inside ``spans`` (see ``range_spans``); ``FALSE`` for none."""
    groups = [k for k in keys if k != range_column]

    def one(span) -> str:
        equal = [
            f"`{g}` IS NULL" if v is None else f"`{g}` = {delta_sql.literal(v)}"
            for g, v in zip(groups, span, strict=False)
        ]
        low, high = span[-2:]
        return " AND ".join(
            [
                *equal,
                f"`{range_column}` BETWEEN {delta_sql.literal(low)} AND {delta_sql.literal(high)}",
            ]
        )

    return " OR ".join(f"({one(s)})" for s in spans) or "FALSE"


#: Most rows in one file of an append clustered by event time (``_append``).
APPEND_FILE_ROWS = 50_000
#: Partition column of the tables with an event-time column: its UTC hour, yyyy-MM-dd-HH.
HOUR_COLUMN = "event_hour"


def _append(
    df,
    path: str,
    cluster_column: str | None = None,
    partition_by=None,
    rows: int | None = None,
) -> None:
    """Append ``df``; with ``cluster_column``, range-partitioned on it into files of at most
    about APPEND_FILE_ROWS rows over disjoint spans of it. A later correction MERGE rewrites
    the files overlapping its rows' span: clustered, that is a file or two of the batch's
    last minutes, not every file of a large batch (each would span all of its time)."""
    if cluster_column:
        rows = df.count() if rows is None else rows
        df = df.repartitionByRange(max(1, -(-rows // APPEND_FILE_ROWS)), cluster_column)
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)


#: Tables this process found partitioned by HOUR_COLUMN (a layout does not change).
_HOURLY: set[str] = set()


def partitioned_by_hour(spark, path: str, exists: bool) -> bool:
    """Whether writes to ``path`` carry HOUR_COLUMN: a new table is partitioned by it; a
    table created before hourly partitions keeps its layout (Delta cannot repartition in
    place; recreate it to get the bound)."""
    if not exists:  # this write creates it, partitioned by hour
        _HOURLY.add(path)
    if path in _HOURLY:
        return True
    if HOUR_COLUMN in delta_sql.detail(spark, path)["partitionColumns"]:
        _HOURLY.add(path)
    return path in _HOURLY


@dataclass(frozen=True)
class StoredSplit:
    """A source cut by whether the table holds rows of its batches (see
    ``split_stored_batches``): None for an empty side."""

    fresh: Any  # rows of batches the table holds no row of: appended
    rest: Any  # rows of the other batches: merged
    fresh_rows: int
    rest_spans: list[tuple]  # event-time spans of ``rest``, per UTC day


def batch_day_spans(source, batch_column: str, days_column: str) -> dict:
    """batch -> {UTC day: (first, last, rows)} of ``days_column``, in one aggregation."""
    from pyspark.sql import functions as F

    rows = (
        source.groupBy(batch_column, F.to_date(days_column))
        .agg(F.min(days_column), F.max(days_column), F.count("*"))
        .collect()
    )
    out: dict = {}
    for batch, day, first, last, n in rows:
        out.setdefault(batch, {})[day] = (first, last, n)
    return out


def merged_spans(per_batch) -> list[tuple]:
    """Per UTC day, the first and last value over ``per_batch``'s days (as event_spans)."""
    days: dict = {}
    for spans in per_batch:
        for day, (first, last, _) in spans.items():
            lo, hi = days.get(day, (first, last))
            days[day] = (min(lo, first), max(hi, last))
    return sorted(days.values())


def split_stored_batches(
    spark, path: str, source, batch_column: str, days_column: str
) -> StoredSplit | None:
    """``source`` cut into the rows of batches the table holds no row of and the rest;
    None for an empty source. One aggregation of the source and one look-up in the table.

    A row already stored carries its batch id and its event time, so a batch absent from
    the table within the source's event-time spans has none of its rows stored: those rows
    can be appended. Appending them, instead of merging them with the corrected rows, keeps
    each file to the event-time span of one batch, so a later correction rewrites a few
    recent files; a MERGE writes the copied and the inserted rows into the same files,
    which then span everything before and every correction rewrites all of it.
    """
    from pyspark.sql import functions as F

    by_batch = batch_day_spans(source, batch_column, days_column)
    if not by_batch:
        return None
    batches = set(by_batch)
    stored = {
        r[0]
        for r in spark.read.format("delta")
        .load(path)
        .filter(spans_predicate(f"`{days_column}`", merged_spans(by_batch.values())))
        .filter(F.col(batch_column).isin(sorted(batches)))
        .select(batch_column)
        .distinct()
        .collect()
    }
    fresh = F.col(batch_column).isin(sorted(batches - stored))
    return StoredSplit(
        fresh=source.filter(fresh) if batches - stored else None,
        rest=source.filter(~fresh) if stored else None,
        fresh_rows=sum(n for b in batches - stored for _, _, n in by_batch[b].values()),
        rest_spans=merged_spans(by_batch[b] for b in stored),
    )


def changed_rows(source, target, keys: list[str], compare_columns: list[str]):
    """``source`` without the rows ``target`` holds with equal ``compare_columns``; None if
    that leaves nothing.

    A MERGE rewrites every file that a source row matches, even where the update's
    condition then keeps the row as it was: a re-scored or re-checked row that did not
    change would copy its whole file. Filtered first, it touches no file, and a write
    where nothing changed commits nothing.
    """
    from pyspark.sql import functions as F

    columns = [*keys, *compare_columns]
    if not set(columns) <= set(target.columns):  # a new column: every row changes
        return source
    same = [F.col(f"s.`{c}`").eqNullSafe(F.col(f"t.`{c}`")) for c in columns]
    rest = (
        source.alias("s")
        .join(target.select(*columns).alias("t"), same, "left_anti")
        .localCheckpoint()  # the MERGE reads it again; the target changes meanwhile
    )
    return None if rest.isEmpty() else rest


def _merge(
    spark,
    path: str,
    source,
    mode: str,
    merge_keys: list[str],
    merge_range_column: str | None,
    compare_columns: list[str] | None,
    prune_days_column: str | None,
    times: list[tuple] | None = None,
) -> None:
    """MERGE ``source`` into the table at ``path``: insert new keys; with ``merge_upsert``
    also update matched rows whose ``compare_columns`` differ. The range / event-time
    bounds let Delta skip the target's other files.

    An insert-only write whose ranges hold no target row yet (a batch landing for the first
    time) is a plain append instead: no join against the target, no second pass.
    The check and the append are two steps, so two writers of one range must not run at
    once (the project's writer pools see to that). ``times``: the source's event-time
    spans when the caller has them.
    """
    stored = spark.read.format("delta").load(path)
    bounds = None
    if merge_range_column:
        spans = range_spans(source, merge_keys, merge_range_column)
        if not spans:
            return  # nothing to write
        if mode == "merge_insert":
            overlap = range_spans_predicate(merge_keys, merge_range_column, spans)
            if not stored.filter(overlap).limit(1).collect():
                _append(source, path)
                return
        bounds = (min(s[-2] for s in spans), max(s[-1] for s in spans))
    condition = merge_condition(merge_keys, merge_range_column, bounds)
    if prune_days_column:
        times = times or event_spans(source, prune_days_column)
        condition += f" AND ({spans_predicate(f't.`{prune_days_column}`', times)})"
    if mode == "merge_upsert":
        if not compare_columns:
            raise ValueError("merge_upsert needs delta/compare_columns")
        target = stored
        if prune_days_column:
            target = target.filter(spans_predicate(f"`{prune_days_column}`", times))
        source = changed_rows(source, target, merge_keys, compare_columns)
        if source is None:
            return  # every row is stored as it is: nothing to commit
    changed = None
    if mode == "merge_upsert":
        # A compare column the table does not have yet (an upgrade adds it): every matched
        # row changes, and the MERGE's schema evolution adds the column.
        changed = (
            " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in compare_columns)
            if set(compare_columns) <= set(stored.columns)
            else "TRUE"
        )
    delta_sql.merge(spark, path, source, condition, update_when=changed)


def write_delta(
    df,
    path: str,
    mode: str,
    batch_column: str = "batch_id",
    batch_ids: list[Any] | None = None,
    partition_by: list[str] | None = None,
    merge_keys: list[str] | None = None,
    merge_range_column: str | None = None,
    compare_columns: list[str] | None = None,
    prune_days_column: str | None = None,
    exists: bool | None = None,
) -> None:
    """Write ``df`` to the Delta table at ``path`` in one transaction.

    ``merge_insert`` inserts only rows whose ``merge_keys`` are not in the table yet: a retry,
    a re-run or an overlapping batch adds nothing twice. ``exists`` saves a look-up when the
    caller knows whether the table exists.
    """
    if mode not in WRITE_MODES:
        raise ValueError(f"delta/write_mode must be one of {WRITE_MODES}, got {mode!r}")
    spark = df.sparkSession
    if exists is None:
        exists = delta_sql.exists(spark, path)
    if prune_days_column and partitioned_by_hour(spark, path, exists):
        # A MERGE rewrites whole files and writes the rows it copies with the rows it
        # changes: without partitions a rewritten file that still holds recent rows is
        # touched by the next correction too and grows with every batch shorter than the
        # lateness. Within an hour's partition, a correction rewrites at most that hour.
        from pyspark.sql import functions as F

        df = df.withColumn(
            HOUR_COLUMN, F.date_format(prune_days_column, "yyyy-MM-dd-HH")
        )
        partition_by = [HOUR_COLUMN]
    writer = df.write.format("delta")
    if partition_by and not exists:
        writer = writer.partitionBy(*partition_by)
    if mode == "overwrite":
        writer.mode("overwrite").option("overwriteSchema", "true").save(path)
    elif not exists and prune_days_column:
        try:
            _append(df.persist(), path, prune_days_column, partition_by)
        finally:
            df.unpersist()
    elif mode == "append" or not exists:
        writer.mode("append").option("mergeSchema", "true").save(path)
    elif mode in ("merge_insert", "merge_upsert"):
        if not merge_keys:
            raise ValueError(f"{mode} needs delta/merge_keys")
        # The source is read for bounds, days or batches before it is written: keep it so
        # the features (or the Kafka read) behind it run once. A source that reads its own
        # target (silver's context) is checkpointed, not cached: after the append of its new
        # rows the MERGE re-analyses it against the newer table version, misses the cache
        # and computes the features again (measured: 8.8 of the MERGE's 10.2 s).
        cached = bool(merge_range_column) and not prune_days_column
        if prune_days_column:
            pinned = df.localCheckpoint()
        else:
            pinned = df.persist() if cached else df
        try:
            rest, times = pinned, None
            if (
                mode == "merge_upsert"
                and prune_days_column
                and batch_column in df.columns
            ):
                split = split_stored_batches(
                    spark, path, pinned, batch_column, prune_days_column
                )
                rest = split and split.rest
                if split and split.fresh is not None:
                    _append(split.fresh, path, prune_days_column, rows=split.fresh_rows)
                times = split and split.rest_spans
            if rest is not None:
                _merge(
                    spark,
                    path,
                    rest,
                    mode,
                    merge_keys,
                    merge_range_column,
                    compare_columns,
                    prune_days_column,
                    times,
                )
        finally:
            if cached:
                pinned.unpersist()
    else:
        if batch_ids is None:
            batch_ids = [r[0] for r in df.select(batch_column).distinct().collect()]
        if (
            not batch_ids
        ):  # nothing in this output and no batch named: nothing to replace
            return
        (
            writer.mode("overwrite")
            .option("replaceWhere", batch_predicate(batch_column, batch_ids))
            .option("mergeSchema", "true")
            .save(path)
        )


def markdown_preview(rows: list[dict], max_cols: int = 12, max_chars: int = 40) -> str:
    """A few rows as a markdown table: the first ``max_cols`` columns, long values cut."""
    if not rows:
        return "_empty table_"
    cols = list(rows[0])[:max_cols]

    def cell(value) -> str:
        text = (
            "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
        )
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def rows_from_commits(recent: list, known: tuple[int, int] | None) -> int | None:
    """The table's rows now, from ``known`` (a version and its row count) and the commits
    since, when ``recent`` (newest first) holds every one of them and each says what it
    added and removed (an append, a MERGE, an OPTIMIZE); None when it cannot tell."""
    if known is None or not recent:
        return None
    version, rows = known
    since = [c for c in recent if c["version"] > version]
    if (since[-1]["version"] if since else recent[0]["version"] + 1) != version + 1:
        return None  # a commit in between is not in ``recent``, or the table went back
    for c in since:
        metrics = c["operationMetrics"] or {}
        mode = (c["operationParameters"] or {}).get("mode")
        if c["operation"] == "MERGE":
            rows += int(metrics.get("numTargetRowsInserted", 0))
            rows -= int(metrics.get("numTargetRowsDeleted", 0))
        elif c["operation"] == "WRITE" and mode == "Append":
            rows += int(metrics.get("numOutputRows", 0))
        elif c["operation"] != "OPTIMIZE":
            return None
    return rows


def delta_table_metadata(
    spark,
    path: str,
    version_before: int | None = None,
    *,
    tag: str | None = None,
    known: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """What a user looks for after a write: version, operation, rows, schema, location.

    The row count comes from ``known`` (the version and row count the last materialisation
    recorded) and the commits since, or else from the Delta log (Delta answers ``count()``
    from file statistics); the inserted / updated / removed / copied rows from the write's own commits' metrics
    (copied: unchanged rows a MERGE rewrote because their file held a changed one). A write
    that had nothing to commit (an empty MERGE source) reports zeros, not the previous
    commit's. ``delta_first_version_written`` .. ``delta_version_written`` are set only when
    this write made commits: checks read those commits' changes to evaluate exactly what
    was written. The write's commits are the ones carrying ``tag`` (``delta_sql.tag_commits``)
    or, without one, those after ``version_before``.
    """
    # The log, the schema and the preview are independent look-ups: asked at once, they
    # cost the slowest of them, not their sum (a session, local or remote, answers
    # concurrent requests in parallel).
    df = spark.read.format("delta").load(path)
    with ThreadPoolExecutor(3, thread_name_prefix="delta-metadata") as pool:
        asked = [
            pool.submit(delta_sql.history, spark, path, 6),
            pool.submit(lambda: df.schema),
            pool.submit(lambda: [r.asDict() for r in df.limit(5).collect()]),
        ]
        recent, schema, preview = [a.result() for a in asked]
    count = rows_from_commits(recent, known)
    if count is None:
        count = df.count()
    # This write's commits (an append and a MERGE, say), newest first; an OPTIMIZE that
    # auto-compaction committed after them is not one of them.
    last = recent[0]
    written = [
        c
        for c in recent
        if c["operation"] != "OPTIMIZE"
        and (
            c["userMetadata"] == tag
            if tag
            else version_before is None or c["version"] > version_before
        )
    ]

    def total(*names: str) -> int:
        """Sum over the write's commits of the first metric each commit has."""
        out = 0
        for c in written:
            metrics = c["operationMetrics"] or {}
            out += int(next((metrics[n] for n in names if n in metrics), 0) or 0)
        return out

    meta = {
        "dagster/uri": MetadataValue.path(path),
        "dagster/row_count": count,
        "dagster/column_schema": spark_schema_to_table_schema(schema),
        "delta_version": last["version"],
        "delta_operation": " + ".join(c["operation"] for c in reversed(written))
        or "none (nothing to write)",
        "rows_written": total("numTargetRowsInserted", "numOutputRows"),
        "rows_updated": total("numTargetRowsUpdated"),
        "rows_removed": total("numTargetRowsDeleted", "numDeletedRows"),
        "rows_copied": total("numTargetRowsCopied"),
        "preview": MetadataValue.md(markdown_preview(preview)),
    }
    if written:
        meta["delta_version_written"] = written[0]["version"]
        meta["delta_first_version_written"] = written[-1]["version"]
    return meta


def _step(context: OutputContext):
    """The step's execution context, None for a context built without a run."""
    try:
        return context.step_context
    except Exception:  # noqa: BLE001 - build_output_context() in a script or test
        return None


def _last_count(context: OutputContext, path: str) -> tuple[int, int] | None:
    """(Delta version, row count) the asset's last materialisation recorded for this
    table, None if there is none (or it was of another path, or no step is at hand)."""
    step = _step(context)
    if step is None:
        return None
    event = step.instance.get_latest_materialization_event(context.asset_key)
    meta = (
        event.asset_materialization.metadata
        if event and event.asset_materialization
        else {}
    )
    uri, version, rows = (
        _plain(meta.get(k))
        for k in ("dagster/uri", "delta_version", "dagster/row_count")
    )
    if uri != path or version is None or rows is None:
        return None
    return int(version), int(rows)


class DeltaIOManager(ConfigurableIOManager):
    """Stores each asset as a Delta table at ``<root>/<asset key path>``."""

    lakehouse: ResourceDependency[LakehouseResource]

    def _path(self, context: InputContext | OutputContext) -> str:
        return self.lakehouse.path(*context.asset_key.path)

    def handle_output(self, context: OutputContext, obj) -> None:
        if obj is None:  # the asset wrote its table itself
            return
        meta = context.definition_metadata or {}
        runtime = context.output_metadata or {}
        batch_id = _plain(runtime.get("batch_id"))
        path = self._path(context)
        spark = self.lakehouse.spark_session
        exists = delta_sql.exists(spark, path)
        tag = delta_sql.tag_commits(spark)
        write_delta(
            obj,
            path,
            mode=_plain(meta.get("delta/write_mode", "overwrite")),
            batch_column=_plain(meta.get("delta/batch_column", "batch_id")),
            batch_ids=None if batch_id is None else [batch_id],
            partition_by=_plain(meta.get("delta/partition_by")),
            merge_keys=_plain(meta.get("delta/merge_keys")),
            merge_range_column=_plain(meta.get("delta/merge_range_column")),
            compare_columns=_plain(meta.get("delta/compare_columns")),
            prune_days_column=_plain(meta.get("delta/prune_days_column")),
            exists=exists,
        )
        context.add_output_metadata(
            delta_table_metadata(spark, path, tag=tag, known=_last_count(context, path))
        )
        step = _step(context)
        taken = step and spark_actions.in_step(context.run_id, step.step.key)
        if taken is not None:
            context.add_output_metadata(
                {
                    "spark_actions": spark_actions.total(taken),
                    "spark_actions_by_call": MetadataValue.json(
                        dict(spark_actions.by_kind(taken))
                    ),
                }
            )

    def load_input(self, context: InputContext):
        spark = self.lakehouse.spark_session
        path = self._path(context)
        if not delta_sql.exists(spark, path):
            raise FileNotFoundError(
                f"No Delta table for asset {context.asset_key.to_user_string()} at {path}; "
                f"materialise that asset first."
            )
        return spark.read.format("delta").load(path)
