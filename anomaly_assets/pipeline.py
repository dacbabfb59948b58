"""One stream's pipeline: its assets, checks, jobs, sensor and maintenance, built from a
``Stream``. definitions.py adds the default stream's; each ``AnomalyPipeline`` component
instance (a ``defs.yaml``) adds its own."""

from dagster import Definitions

from anomaly_assets.alerts.assets import build_alert_outbox
from anomaly_assets.alerts.checks import build_alert_checks
from anomaly_assets.alerts.operations import build_operations, with_freshness
from anomaly_assets.enrichment.assets import build_enrichment
from anomaly_assets.enrichment.checks import build_enrichment_checks
from anomaly_assets.evaluation.assets import build_ai_enrichment_eval_metrics
from anomaly_assets.evaluation.checks import build_evaluation_checks
from anomaly_assets.feedback.assets import build_analyst_feedback
from anomaly_assets.gold.assets import build_gold
from anomaly_assets.gold.checks import build_gold_checks
from anomaly_assets.gold.incident_checks import build_incident_checks
from anomaly_assets.gold.incidents_asset import build_gold_user_incidents
from anomaly_assets.gold.risk_asset import build_gold_user_risk
from anomaly_assets.ingestion.assets import build_bronze
from anomaly_assets.ingestion.checks import build_bronze_checks
from anomaly_assets.ingestion.sensor import build_kafka_offsets_sensor
from anomaly_assets.jobs import build_jobs
from anomaly_assets.maintenance import build_maintenance
from anomaly_assets.model.assets import build_anomaly_model
from anomaly_assets.silver.assets import build_silver
from anomaly_assets.silver.checks import build_silver_checks
from anomaly_assets.stream import Stream

#: Asset factories, upstream first.
ASSET_FACTORIES = (
    build_bronze,
    build_silver,
    build_anomaly_model,
    build_gold,
    build_gold_user_incidents,
    build_gold_user_risk,
    build_enrichment,
    build_ai_enrichment_eval_metrics,
    build_analyst_feedback,
    build_alert_outbox,
)
CHECK_FACTORIES = (
    build_bronze_checks,
    build_silver_checks,
    build_gold_checks,
    build_incident_checks,
    build_enrichment_checks,
    build_evaluation_checks,
    build_alert_checks,
)


def stream_parts(stream: Stream) -> dict:
    """Everything ``stream`` runs on, as Definitions arguments (resources come from the
    project's Definitions)."""
    jobs = build_jobs(stream)
    optimize_job, optimize_schedule = build_maintenance(stream)
    operations = build_operations(stream, {j.name for j in [*jobs, optimize_job]})
    return {
        "assets": with_freshness(stream, [build(stream) for build in ASSET_FACTORIES]),
        "asset_checks": [check for build in CHECK_FACTORIES for check in build(stream)],
        "jobs": [*jobs, optimize_job, *operations["jobs"]],
        "schedules": [optimize_schedule],
        "sensors": [build_kafka_offsets_sensor(stream, jobs), *operations["sensors"]],
    }


def stream_definitions(stream: Stream) -> Definitions:
    return Definitions(**stream_parts(stream))
