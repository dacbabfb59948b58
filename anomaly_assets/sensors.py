"""The Kafka offsets sensor: new offsets in the topic become bounded, exactly-once batches.

Each tick reads the per-partition end offsets (no consuming), plans batches of at most
``max_batch_events`` from the cursor, and requests one run per batch. The run_key is the exact
range, so Dagster never launches the same range twice, and the cursor moves only over ranges
it requested. An unreachable broker skips the tick and leaves the cursor alone.

Cold start: while ``anomaly_model`` has not produced a champion (and no run is already
training it), the tick's first batch goes to ``ingest_and_train_job``, which trains the model
on the silver rows before scoring them, so a fresh deployment needs no manual step.
"""

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from anomaly_assets import settings
from anomaly_assets.jobs import ingest_and_train_job, ingest_job
from anomaly_assets.lib.offsets import (
    KafkaUnavailable,
    advance,
    batch_id,
    batch_key,
    decode_cursor,
    encode_cursor,
    fetch_offsets,
    plan_batches,
    ranges_to_config,
)
from anomaly_assets.resources.kafka import KafkaResource

_IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def needs_model(instance: DagsterInstance) -> bool:
    """No champion from anomaly_model's latest materialisation, and no run training one.

    A materialisation whose quality gate failed leaves no champion, so the next batch
    trains again (on all silver rows so far) rather than every batch failing at gold.
    """
    event = instance.get_latest_materialization_event(AssetKey("anomaly_model"))
    if event is not None and event.asset_materialization is not None:
        champion = event.asset_materialization.metadata.get("champion_version")
        if champion is not None and champion.value != "none":
            return False
    training = instance.get_runs(
        RunsFilter(job_name=ingest_and_train_job.name, statuses=_IN_FLIGHT), limit=1
    )
    return not training


def run_request(topic: str, ranges, train: bool = False) -> RunRequest:
    bid = batch_id(topic, ranges)
    return RunRequest(
        job_name=(ingest_and_train_job if train else ingest_job).name,
        run_key=batch_key(topic, ranges),
        run_config={
            "ops": {
                "bronze": {
                    "config": {"batch_id": bid, "ranges": ranges_to_config(ranges)}
                }
            }
        },
        tags={
            "anomaly_assets/batch_id": bid,
            "anomaly_assets/topic": topic,
            "anomaly_assets/offsets": str(sum(r.count for r in ranges)),
        },
    )


@sensor(
    jobs=[ingest_job, ingest_and_train_job],
    minimum_interval_seconds=settings.SENSOR_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING
    if settings.SENSOR_RUNNING
    else DefaultSensorStatus.STOPPED,
    description="Starts an ingestion run for each bounded batch of new Kafka offsets.",
)
def kafka_offsets_sensor(context: SensorEvaluationContext, kafka: KafkaResource):
    try:
        starts, ends = fetch_offsets(
            kafka.client_config(), kafka.topic, kafka.request_timeout_s
        )
    except KafkaUnavailable as exc:
        return SkipReason(f"Kafka unavailable, cursor unchanged: {exc}")
    cursor = decode_cursor(context.cursor)
    batches = plan_batches(
        cursor,
        ends,
        kafka.max_batch_events,
        kafka.max_runs_per_tick,
        start_offsets=starts,
    )
    if not batches:
        return SkipReason(
            f"No new offsets in {kafka.topic} (cursor {encode_cursor(cursor)})."
        )
    train_first = needs_model(context.instance)
    return SensorResult(
        run_requests=[
            run_request(kafka.topic, b, train=train_first and i == 0)
            for i, b in enumerate(batches)
        ],
        cursor=encode_cursor(advance(cursor, batches)),
    )
