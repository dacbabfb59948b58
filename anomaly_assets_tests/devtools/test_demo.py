"""`make demo` prints progress per asset and a summary, and nothing else: Dagster's event
stream and whatever libraries write to stdout or stderr go to the log file it names."""

import os
import sys

from dagster import (
    AssetCheckResult,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    asset,
    asset_check,
)

from anomaly_assets.devtools.demo import Progress


@asset
def raw_events():
    os.write(2, b"a JVM line on stderr\n")
    # a library printing to the process's stdout (pytest's capture replaces sys.stdout)
    print(
        "Successfully registered model 'a library notice on stdout'",
        file=sys.__stdout__,
    )
    sys.__stdout__.flush()
    os.write(1, b"a banner on the stdout descriptor\n")
    return MaterializeResult(metadata={"rows_written": 1200})


@asset(deps=[raw_events])
def scored_events():
    raise RuntimeError("the model is missing")


@asset_check(asset=raw_events)
def raw_events_not_empty():
    return AssetCheckResult(passed=True)


def test_progress_shows_steps_rows_checks_and_keeps_the_event_stream_in_a_file(
    tmp_path, capfd
):
    defs = Definitions(
        assets=[raw_events, scored_events], asset_checks=[raw_events_not_empty]
    )
    job = defs.resolve_implicit_global_asset_job_def()
    log = tmp_path / "demo.log"
    with DagsterInstance.ephemeral() as instance:
        with Progress(instance, log, {"raw_events", "scored_events"}) as progress:
            result = job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_id=progress.run_id,
                run_config={
                    "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}
                },
            )
        summary = progress.summary()
    assert not result.success
    out, err = capfd.readouterr()
    words = [line.split() for line in out.splitlines()]
    # one line each, in order: an event shown twice or missed would show here
    assert [w[:2] for w in words] == [
        ["raw_events", "started"],
        ["raw_events", "done"],
        ["check", "raw_events_not_empty"],
        ["scored_events", "started"],
        ["scored_events", "FAILED"],
    ], out
    assert words[1][-3:] == ["raw_events", "1,200", "rows"] and words[2][2] == "passed"
    assert "STEP_START" not in out and "DEBUG" not in out and err == ""
    assert "Checks: 1 passed, 0 failed. Failed steps: scored_events" in summary
    text = log.read_text()
    assert "a JVM line on stderr" in text
    assert "a library notice on stdout" in text and "a library notice" not in out
    assert "a banner on the stdout descriptor" in text and "banner" not in out
    assert "the model is missing" in text and "STEP_FAILURE" in text
