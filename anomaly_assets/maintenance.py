"""Table maintenance: a scheduled OPTIMIZE compacts the small files every batch adds.

Each batch commits a few small files per table; left alone, months of them make every
snapshot, file listing and data-skipping pass slower. ``optimize_tables_job`` bin-packs
them (Delta's OPTIMIZE), one op per writer pool, so it never runs beside the step that
writes the same tables. Only files under ``min_file_size_mb`` are candidates, and none
grows past it, so a run rewrites what arrived since the last one (plus at most one small
remainder per table), not the table. Compaction commits change no data: change-feed readers skip them.
"""

from dagster import (
    AssetObservation,
    Config,
    DefaultScheduleStatus,
    OpExecutionContext,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from anomaly_assets import settings
from anomaly_assets.core import delta_sql
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM, Stream

#: Writer pool -> the tables its steps write.
TABLES_BY_POOL = {
    "bronze": ("bronze_events", "bronze_quarantine", "bronze_offset_ledger"),
    "silver_events": ("silver_events", "silver_user_profile"),
    "gold": ("gold_anomaly_predictions", "gold_batch_drift"),
    "enrichment": ("gold_events_enriched", "llm_explanation_cache"),
    "ai_enrichment_eval_metrics": ("ai_enrichment_eval_metrics",),
}


class OptimizeConfig(Config):
    min_file_size_mb: int = Field(
        default=128,
        description="Files at least this large are left as they are; smaller ones are "
        "bin-packed into files of up to this size (so a later correction that rewrites a "
        "compacted file rewrites at most this much).",
    )


def optimize(spark, path: str, min_file_size_mb: int) -> dict:
    """OPTIMIZE the table at ``path``: files removed / added, bytes written."""
    for bound in ("minFileSize", "maxFileSize"):
        spark.conf.set(
            f"spark.databricks.delta.optimize.{bound}", str(min_file_size_mb << 20)
        )
    metrics = spark.sql(f"OPTIMIZE {delta_sql.ref(path)}").first()["metrics"]
    return {
        "files_removed": metrics["numFilesRemoved"],
        "files_added": metrics["numFilesAdded"],
        "bytes_added": metrics["filesAdded"]["totalSize"],
    }


def _optimize_op(stream: Stream, pool: str, tables: tuple[str, ...]):
    @op(
        name=stream.named(f"optimize_{pool}"),
        description=f"OPTIMIZE {', '.join(tables)} (pool {stream.pool(pool)}).",
        pool=stream.pool(pool),
        tags={"kind": "delta"},
    )
    def _op(
        context: OpExecutionContext,
        config: OptimizeConfig,
        lakehouse: LakehouseResource,
    ):
        lakehouse = stream.lakehouse(lakehouse)
        for table in tables:
            if not lakehouse.exists(table):
                context.log.info(f"{table}: no table yet, nothing to compact")
                continue
            figures = optimize(
                lakehouse.spark_session, lakehouse.path(table), config.min_file_size_mb
            )
            context.log.info(f"{table}: {figures}")
            context.log_event(
                AssetObservation(
                    asset_key=stream.key(table),
                    metadata={"optimize/" + k: v for k, v in figures.items()},
                )
            )

    return _op


def build_maintenance(stream: Stream = DEFAULT_STREAM):
    """``stream``'s OPTIMIZE job and its daily schedule."""

    @job(
        name=stream.named("optimize_tables_job"),
        executor_def=in_process_executor,
        description="Compact the small files of every Delta table (OPTIMIZE), each beside "
        "no writer of the same table. Scheduled daily; safe to launch at any time.",
    )
    def optimize_tables_job():
        for pool, tables in TABLES_BY_POOL.items():
            _optimize_op(stream, pool, tables)()

    schedule = ScheduleDefinition(
        name=stream.named("optimize_tables_job_schedule"),
        job=optimize_tables_job,
        cron_schedule=settings.OPTIMIZE_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="OPTIMIZE every table once a day (env ANOMALY_OPTIMIZE_CRON).",
    )
    return optimize_tables_job, schedule
