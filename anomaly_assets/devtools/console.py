"""Keep the terminal for a tool's own lines.

Whatever else writes to the process's stdout or stderr descriptors (a JVM's ivy report,
librdkafka's warnings, library banners, progress bars, child processes that inherit them)
goes to a log file; the tool's lines keep the terminal through a descriptor of their own.
Python's ``sys.stdout`` and ``sys.stderr`` stay the objects they are, on descriptors 1 and
2, so code that captures them (Dagster's step output capture) still finds them there.
"""

import os
import sys
from pathlib import Path
from typing import Self


class ConsoleToLog:
    """``with ConsoleToLog(path) as console: console.say("...")``: descriptors 1 and 2 go
    to ``path`` (appended) until the block ends, whatever ends it."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = Path(log_path)

    def __enter__(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved: dict[int, int] = {}
        self._console = None
        self.log = open(self.log_path, "a")
        try:
            for fd in (1, 2):
                self._saved[fd] = os.dup(fd)
            self._console = os.fdopen(os.dup(self._saved[1]), "w", buffering=1)
            for fd in (1, 2):
                os.dup2(self.log.fileno(), fd)
        except BaseException:
            self._restore()
            raise
        return self

    def say(self, line: str) -> None:
        """``line`` on the terminal."""
        self._console.write(line + "\n")

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        """The terminal back on descriptors 1 and 2, and every handle closed, once."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, saved in self._saved.items():
                os.dup2(saved, fd)
                os.close(saved)
            self._saved = {}
        finally:
            try:
                if self._console is not None:
                    self._console.close()
                    self._console = None
            finally:
                self.log.close()
