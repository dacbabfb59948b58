"""Every command the README and docs show works as written, the way a reader runs it: from
the project root of a set-up clone, in a plain shell (no DAGSTER_HOME).

Commands that check or list run for real. Commands that start services or long work (the
demo, the suite, the benches, the dev servers) are checked for what they name: the make
target exists, the program accepts the arguments shown (up to ``--help``). A command of a
kind this file does not know fails the test, so a new one in the docs gets a rule here.
"""

import contextlib
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Inline code that reads as a command, besides the lines of shell blocks.
INLINE = re.compile(r"`((?:\.venv/bin/|make |python -m |dg |dagster )[^`]*)`")
#: Placeholders the docs show for the reader to fill in.
PLACEHOLDERS = ("path::test", "my_prompt.md")
#: Run for real with their subcommand: quick, and what a reader runs before anything else.
SUBCOMMANDS = (("dg", "check"), ("dg", "list"), ("dagster", "definitions"))


def documented_commands() -> dict[str, list[str]]:
    """Each command of a shell block's lines and of inline code -> the pages showing it,
    comments and ``cd`` steps resolved (a block's ``cd bench`` applies to its later lines)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for block in re.findall(
            r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.DOTALL
        ):
            cwd = ""
            for line in block.splitlines():
                line = line.split(" #")[0].strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("cd "):
                    cwd = line[3:].strip()
                    continue
                for step in line.split(" && "):
                    found.append((page.name, f"cd {cwd} && {step}" if cwd else step))
        for inline in INLINE.findall(text):
            found += [(page.name, " ".join(s.split())) for s in inline.split(" && ")]
    pages: dict[str, list[str]] = {}
    for page, command in sorted(set(found)):
        pages.setdefault(command, []).append(page)
    return pages


def how_to_check(command: str):
    """("run", cwd, argv) for a process; ("python", cwd, kind, target, args) for Python the
    test can run in its own process (a module, a script, a console script) up to --help;
    None for what is not a command to run (an export, a placeholder)."""
    cwd = ROOT
    if command.startswith("cd "):
        folder, command = command[3:].split(" && ", 1)
        cwd = ROOT / folder
    argv = shlex.split(command)
    if argv[0] == "export" or any(p in command for p in PLACEHOLDERS):
        return None
    program = Path(argv[0]).name
    if program == "make":
        return "run", cwd, ["make", "-n", *argv[1:]]
    if program == "mkdir":
        return "run", cwd, ["test", "-d", str(Path(argv[-1]).parent)]
    if program == "cp":
        return "run", cwd, ["test", "-f", argv[1]]
    if program == "python" or argv[0].endswith("/python"):
        if argv[1] == "-m":
            return "python", cwd, "module", argv[2], argv[3:]
        return "python", cwd, "script", argv[1], argv[2:]
    if program.startswith("anomaly-"):
        return "python", cwd, "console", program, argv[1:]
    if program in ("dg", "dagster"):
        binary = str(ROOT / ".venv/bin" / program)
        if (program, argv[1]) in SUBCOMMANDS and len(argv) > 2:
            return "run", cwd, [binary, *argv[1:]]
        return "run", cwd, [binary, *argv[1:], "--help"]
    raise AssertionError(f"no rule for the documented command {command!r}")


def source_of(kind: str, target: str, cwd: Path) -> Path:
    if kind == "module":
        return Path(find_spec(target).origin)
    if kind == "script":
        return cwd / target
    (script,) = entry_points(group="console_scripts", name=target)
    return Path(find_spec(script.module).origin)


def run_python(kind: str, target: str, args: list[str], cwd: Path) -> int:
    """Run ``target`` with ``args`` and --help in this process (its imports are shared, so
    a check costs milliseconds, not a fresh interpreter); the exit code. A program that
    does not parse its arguments would run for real: it is only found, not run."""
    if "ArgumentParser" not in source_of(kind, target, cwd).read_text():
        return 0 if not args else 2
    saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
    sys.argv = [target, *args, "--help"]
    os.chdir(cwd)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if kind == "module":
                runpy.run_module(target, run_name="__main__", alter_sys=False)
            elif kind == "script":
                sys.path.insert(0, str(cwd))
                runpy.run_path(str(cwd / target), run_name="__main__")
            else:
                (script,) = entry_points(group="console_scripts", name=target)
                script.load()()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
    return 0


COMMANDS = documented_commands()


def test_the_docs_show_the_commands_a_reader_needs():
    assert {"make demo", "make test", "make dev", ".venv/bin/dg check defs"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_documented_command_works_as_written(command):
    check = how_to_check(command)
    if check is None:
        return
    where = f"{', '.join(COMMANDS[command])}: `{command}`"
    if check[0] == "python":
        _, cwd, kind, target, args = check
        assert run_python(kind, target, args, cwd) == 0, f"{where} does not take {args}"
        return
    _, cwd, argv = check
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, (
        f"{where} (checked as {argv}) exited {done.returncode}:\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
