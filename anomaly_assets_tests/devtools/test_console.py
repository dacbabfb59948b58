"""ConsoleToLog: a tool's own lines on the terminal, everything else written to the
process's descriptors (child processes included) in the log, and the terminal back after
the block however it ends."""

import os
import subprocess
import sys

import pytest

from anomaly_assets.devtools.console import ConsoleToLog

IVY_LIKE = (
    "import sys; print(':: loading settings', file=sys.stderr); print('ivy report')"
)


def test_children_and_libraries_go_to_the_log_and_the_tool_keeps_the_terminal(
    tmp_path, capfd
):
    log = tmp_path / "tool.log"
    with (
        pytest.raises(RuntimeError, match="resolution failed"),
        ConsoleToLog(log) as console,
    ):
        console.say("Resolving packages")
        # a JVM launcher: a child process inheriting stdout and stderr
        subprocess.run(
            [sys.executable, "-c", IVY_LIKE],
            check=True,
        )
        os.write(2, b"%4|GETPID| librdkafka retrying\n")
        raise RuntimeError("resolution failed")
    os.write(1, b"after the block\n")
    out, err = capfd.readouterr()
    assert out.splitlines() == ["Resolving packages", "after the block"]
    assert err == ""
    text = log.read_text()
    assert ":: loading settings" in text and "ivy report" in text
    assert "librdkafka retrying" in text
