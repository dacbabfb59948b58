"""A stream's defs.yaml through Dagster's component loader: a mistake fails loading with
the file, the line and the field."""

import textwrap

import pytest
from dagster.components.testing import create_defs_folder_sandbox

GOOD = """\
type: anomaly_assets.components.anomaly_pipeline.AnomalyPipeline
attributes:
  key_prefix: [payments]
  kafka:
    topic: payments
  contract:
    event_types: [purchase, login]
  features:
    - events_1m
    - amount_vs_user_mean
"""


def load(text: str):
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "payments"
        folder.mkdir(parents=True)
        (folder / "defs.yaml").write_text(text)
        with sandbox.build_all_defs() as defs:
            return defs


def failure(text: str) -> str:
    with pytest.raises(Exception) as caught:
        load(text)
    chain, error = [], caught.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(chain)


def test_a_valid_stream_loads():
    load(GOOD)


@pytest.mark.parametrize(
    ("edit", "line", "field", "says"),
    [
        (("topic: payments", "topik: payments"), 5, "attributes.kafka.topik", "Extra"),
        (
            ("topic: payments", "max_batch_events: 500"),
            4,
            "attributes.kafka.topic",
            "Field required",
        ),
        (
            ("    - events_1m", "    - events_2m"),
            9,
            "attributes.features.0",
            "events_2m",
        ),
        (
            ("  key_prefix: [payments]", "  severity: {critical_at: high}"),
            3,
            "attributes.severity.critical_at",
            "number",
        ),
    ],
)
def test_a_mistake_names_file_line_and_field(edit, line, field, says):
    text = failure(GOOD.replace(*edit))
    assert f"defs.yaml:{line}" in text and field in text and says in text, text


def test_a_feature_the_contract_cannot_feed_names_its_own_line():
    text = failure(
        GOOD.replace(
            "    event_types: [purchase, login]",
            textwrap.indent(
                "fields: [event_id, event_type, event_ts, user_id, session_id, "
                "ip_address, country, device_type, user_agent, schema_version, "
                "success]\nevent_types: [login]",
                "    ",
            ),
        )
    )
    # amount_vs_user_mean, the second feature, on line 11 now, needs amount
    assert "attributes.features.1 at " in text and "defs.yaml:11" in text, text
    assert "feature 'amount_vs_user_mean' needs contract field(s) ['amount']" in text
