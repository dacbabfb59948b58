"""analyst_feedback as the pipeline sees it: an external asset, written by the triage page
(not by a run), read by alert_outbox."""

from dagster import AssetSpec, TableColumn, TableSchema

from anomaly_assets.feedback.store import SCHEMA, TABLE
from anomaly_assets.stream import Stream


def build_analyst_feedback(stream: Stream) -> AssetSpec:
    return AssetSpec(
        key=stream.key(TABLE),
        description="Analysts' answers about incidents from the triage page, append-only: "
        "who, when, what (confirm, dismiss, snooze, assign, comment, reopen), why, the "
        "incident's events and the model version they saw. A dismissal suppresses its "
        "pattern's alerts for its window.",
        group_name=stream.group("feedback"),
        kinds={"delta"},
        tags={"layer": "feedback"},
        owners=["team:ml-platform"],
        metadata={
            "dagster/column_schema": TableSchema(
                columns=[TableColumn(f.name, str(f.type)) for f in SCHEMA]
            ),
            "written_by": "the triage page (anomaly-triage), with the deltalake package",
        },
    )
