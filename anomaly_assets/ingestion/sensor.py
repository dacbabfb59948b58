"""The Kafka offsets sensor, one per stream: new offsets in the stream's topic become
bounded, exactly-once batches.

Each tick reads the topic's id and per-partition end offsets (the last stable offset under
read_committed; no consuming), plans batches of at most ``max_batch_events`` from the cursor,
and requests one run per batch. The run_key is the exact range, so Dagster never launches the
same range twice. The cursor remembers every requested batch until its run succeeds; a failed
or cancelled run is requested again under a fresh run key after an exponential backoff
(``ingestion/sensor_state.py``), so a failure never leaves a hole behind the cursor. An unreachable
broker skips the tick and leaves the cursor alone. A topic deleted and created again (new
topic id), or a new topic name in the configuration, starts from that topic's log start and
says so in the tick log and as an observation on the stream's bronze_events.

Cold start: while the stream's ``anomaly_model`` has not produced a champion (and no run is
already training it), the tick's first batch goes to its ``ingest_and_train_job``, which
trains the model on the silver rows before scoring them, so a fresh deployment (or a new
stream) needs no manual step. Names are the stream's (``stream.py``): the default stream's
are the ones above; a declared stream's carry its prefix (``payments__ingest_job``).
"""

import time

from dagster import (
    AssetKey,
    AssetObservation,
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
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.ledger import previous_landed_through
from anomaly_assets.ingestion.offsets import (
    KafkaUnavailable,
    advance,
    batch_id,
    batch_key,
    fetch_topic_state,
    plan_batches,
    ranges_to_config,
)
from anomaly_assets.ingestion.sensor_state import (
    FAILED,
    IN_FLIGHT,
    SUCCEEDED,
    UNKNOWN,
    PendingBatch,
    SensorCursor,
    decide,
)
from anomaly_assets.jobs import StreamJobs, build_jobs
from anomaly_assets.stream import DEFAULT_STREAM, Stream

IN_FLIGHT_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def needs_model(instance: DagsterInstance, model: AssetKey, training_job: str) -> bool:
    """No champion from the latest materialisation of ``model`` (a stream's
    anomaly_model), and no ``training_job`` run training one.

    A materialisation whose quality gate failed leaves no champion, so the next batch
    trains again (on all silver rows so far) rather than every batch failing at gold.
    """
    event = instance.get_latest_materialization_event(model)
    if event is not None and event.asset_materialization is not None:
        champion = event.asset_materialization.metadata.get("champion_version")
        if champion is not None and champion.value != "none":
            return False
    training = instance.get_runs(
        RunsFilter(job_name=training_job, statuses=IN_FLIGHT_STATUSES), limit=1
    )
    return not training


BATCH_TAG = "anomaly_assets/batch_id"
ATTEMPT_TAG = "anomaly_assets/attempt"
_FINISHED = {
    DagsterRunStatus.SUCCESS: SUCCEEDED,
    DagsterRunStatus.FAILURE: FAILED,
    DagsterRunStatus.CANCELED: FAILED,
}


def run_request(
    topic: str, batch: PendingBatch, job: str, stream: Stream = DEFAULT_STREAM
) -> RunRequest:
    """The run of one batch: its exact ranges as bronze's config, tagged with the batch,
    the attempt and the stream's lane (run_outcomes finds the stream's runs by it)."""
    ranges = list(batch.ranges)
    key = batch_key(topic, ranges)
    return RunRequest(
        job_name=job,
        run_key=key if batch.attempt == 1 else f"{key}|attempt={batch.attempt}",
        run_config={
            "ops": {
                stream.named("bronze"): {
                    "config": {
                        "batch_id": batch.batch_id,
                        "topic_id": batch.topic_id,
                        "ranges": ranges_to_config(ranges),
                    }
                }
            }
        },
        tags={
            BATCH_TAG: batch.batch_id,
            ATTEMPT_TAG: str(batch.attempt),
            "anomaly_assets/topic": topic,
            "anomaly_assets/offsets": str(sum(r.count for r in ranges)),
            **stream.lane,
        },
    )


def run_outcomes(
    instance: DagsterInstance, batch_ids: list[str], lane: dict[str, str]
) -> dict[str, str]:
    """batch id -> outcome of its latest run in ``lane`` (a stream's ingestion runs: two
    streams reading one topic plan the same batch ids); UNKNOWN when it has none yet."""
    outcomes: dict[str, str] = {}
    if batch_ids:
        for run in instance.get_runs(RunsFilter(tags={BATCH_TAG: batch_ids, **lane})):
            bid = run.tags.get(BATCH_TAG)
            if bid not in outcomes:  # newest first
                outcomes[bid] = _FINISHED.get(run.status, IN_FLIGHT)
    return {b: outcomes.get(b, UNKNOWN) for b in batch_ids}


def _restart_topic(
    cursor: SensorCursor, state, log, bronze: AssetKey
) -> AssetObservation | None:
    """A new topic name or a recreated topic starts from its log start; says so."""
    if cursor.topic == state.topic and cursor.topic_id in ("", state.topic_id):
        cursor.topic_id = state.topic_id
        return None
    if cursor.topic != state.topic:
        # batches of the old topic cannot be read through the new configuration
        what = (
            f"topic changed from {cursor.topic!r} to {state.topic!r} (not retrying "
            f"{len(cursor.pending)} batch(es) of the old topic)"
        )
        cursor.pending = {}
    else:
        what = (
            f"topic {state.topic!r} was deleted and created again (id "
            f"{cursor.topic_id} -> {state.topic_id})"
        )
    message = f"Kafka {what}: ingesting it from its log start {state.starts}."
    log.warning(message)
    cursor.topic, cursor.topic_id, cursor.offsets = state.topic, state.topic_id, {}
    return AssetObservation(
        asset_key=bronze,
        description=message,
        metadata={"topic": state.topic, "topic_id": state.topic_id},
    )


def build_kafka_offsets_sensor(
    stream: Stream = DEFAULT_STREAM, jobs: StreamJobs | None = None
):
    """``stream``'s offsets sensor: its own name, cursor, topic and jobs."""
    jobs = jobs or build_jobs(stream)

    @sensor(
        name=stream.named("kafka_offsets_sensor"),
        jobs=[jobs.ingest, jobs.ingest_and_train],
        minimum_interval_seconds=settings.SENSOR_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING
        if settings.SENSOR_RUNNING
        else DefaultSensorStatus.STOPPED,
        description="Starts an ingestion run for each bounded batch of new Kafka offsets, "
        "and requests a failed batch again with backoff.",
    )
    def kafka_offsets_sensor(context: SensorEvaluationContext, kafka: KafkaResource):
        return tick(context, stream.kafka(kafka), stream, jobs)

    return kafka_offsets_sensor


def tick(context, kafka: KafkaResource, stream: Stream, jobs: StreamJobs):
    """One evaluation: retries due, new batches planned, the cursor moved past them."""
    try:
        state = fetch_topic_state(
            kafka.client_config(),
            kafka.topic,
            kafka.request_timeout_s,
            kafka.read_committed,
        )
    except KafkaUnavailable as exc:
        return SkipReason(f"Kafka unavailable, cursor unchanged: {exc}")
    cursor = SensorCursor.decode(context.cursor, kafka.topic)
    observation = _restart_topic(
        cursor, state, context.log, stream.key("bronze_events")
    )
    if not cursor.offsets:  # a new cursor: what the ledger holds has landed already
        cursor.offsets = previous_landed_through(
            context.instance,
            stream.key("bronze_offset_ledger"),
            state.topic,
            state.topic_id,
        )
    now = time.time()
    policy = kafka.retry_policy()

    retries: list[PendingBatch] = []
    outcomes = run_outcomes(context.instance, list(cursor.pending), stream.lane)
    for bid, outcome in outcomes.items():
        decision = decide(cursor.pending[bid], outcome, now, policy)
        if decision.message:
            log = (
                context.log.error
                if decision.action == "give_up"
                else context.log.warning
            )
            log(decision.message)
        if decision.action in ("done", "give_up"):
            del cursor.pending[bid]
        else:
            cursor.pending[bid] = decision.batch
            if decision.action == "retry":
                retries.append(decision.batch)

    room = max(0, kafka.max_pending_batches - len(cursor.pending))
    batches = (
        plan_batches(
            cursor.offsets,
            state.ends,
            kafka.max_batch_events,
            min(kafka.max_runs_per_tick, room),
            start_offsets=state.starts,
        )
        if room
        else []
    )
    new = [
        PendingBatch(batch_id(kafka.topic, b), state.topic_id, tuple(b), 1, now)
        for b in batches
    ]
    cursor.offsets = advance(cursor.offsets, batches)
    cursor.pending.update({b.batch_id: b for b in new})
    if not new and not retries:
        waiting = len(cursor.pending)
        return SensorResult(
            skip_reason=f"No new offsets in {kafka.topic} "
            f"({waiting} batch(es) in flight or waiting to retry).",
            cursor=cursor.encode(),
            asset_events=[observation] if observation else [],
        )
    train_first = needs_model(
        context.instance, stream.key("anomaly_model"), jobs.ingest_and_train.name
    )
    return SensorResult(
        run_requests=[
            run_request(
                kafka.topic,
                b,
                (jobs.ingest_and_train if train_first and i == 0 else jobs.ingest).name,
                stream,
            )
            for i, b in enumerate([*retries, *new])
        ],
        cursor=cursor.encode(),
        asset_events=[observation] if observation else [],
    )


kafka_offsets_sensor = build_kafka_offsets_sensor()
