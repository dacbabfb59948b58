"""Counts the Spark actions a step takes: the calls that make Spark run something and wait
for it (a query collected or counted, a table written, a SQL command such as MERGE or
DESCRIBE HISTORY).

A small batch's cost is mostly these round trips, not its rows, so each one has to earn its
place; counting them per step shows where they go and lets a test pin an upper bound. The
count is kept in Python, around the DataFrame, writer and session methods of classic Spark
and of Spark Connect alike (a JVM-side listener would not see a Connect client's calls).
A call made inside another counted call (``first`` runs ``head``, which runs ``take``)
counts once.
"""

import functools
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

_DATAFRAME = (
    "collect",
    "count",
    "first",
    "head",
    "take",
    "tail",
    "isEmpty",
    "toPandas",
    "toArrow",
    "toLocalIterator",
    "foreach",
    "foreachPartition",
    "localCheckpoint",
    "checkpoint",
)
_WRITER = ("save", "saveAsTable", "insertInto")
#: Methods that run something, by (module, class), classic and Connect.
ACTIONS = {
    ("pyspark.sql.classic.dataframe", "DataFrame"): _DATAFRAME,
    ("pyspark.sql.connect.dataframe", "DataFrame"): _DATAFRAME,
    ("pyspark.sql.readwriter", "DataFrameWriter"): _WRITER,
    ("pyspark.sql.connect.readwriter", "DataFrameWriter"): _WRITER,
    ("pyspark.sql.session", "SparkSession"): ("sql",),
    ("pyspark.sql.connect.session", "SparkSession"): ("sql",),
}

_lock = threading.Lock()
_calls: Counter = Counter()
#: Wall seconds spent in the actions, by the same keys as ``_calls``.
_seconds: Counter = Counter()
_depth = threading.local()
_installed = False
#: (run id, step key) -> the actions counted when the step began.
_starts: dict[tuple[str, str], Counter] = {}


def _counted(name: str, method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        key = None
        if not getattr(_depth, "n", 0):
            kind = name
            if name == "sql":
                kind += " " + _verb(
                    args[1] if len(args) > 1 else kwargs.get("sqlQuery")
                )
            key = (kind, _site())
            with _lock:
                _calls[key] += 1
        _depth.n = getattr(_depth, "n", 0) + 1
        began = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            _depth.n -= 1
            if key is not None:
                with _lock:
                    _seconds[key] += time.perf_counter() - began

    wrapper.__spark_action__ = True
    return wrapper


#: Modules that only pass a call on: the site is their caller, after their name.
_HELPERS = ("spark_actions.py", "delta_sql.py", "cursors.py", "lakehouse.py")


def _site() -> str:
    """The project's line that asked (``silver/assets.py:153``), after the helper it went
    through (``delta_sql.history < io_managers/delta.py:474``)."""
    frame, helper = sys._getframe(2), None
    while frame is not None:
        name = frame.f_code.co_filename.rsplit("/", 1)[-1]
        if "anomaly_assets" in frame.f_code.co_filename:
            if name not in _HELPERS:
                folder = frame.f_code.co_filename.rsplit("/", 2)[-2]
                where = f"{folder}/{name}:{frame.f_lineno}"
                return f"{helper} < {where}" if helper else where
            if helper is None and name != "spark_actions.py":
                helper = f"{name.removesuffix('.py')}.{frame.f_code.co_name}"
        frame = frame.f_back
    return helper or "?"


def _verb(query) -> str:
    """The statement's first words (``MERGE``, ``DESCRIBE HISTORY``), never its values."""
    words = str(query or "").split()[:2]
    if words and words[0].upper() == "DESCRIBE":
        return " ".join(w.upper() for w in words)
    return words[0].upper() if words else ""


def install() -> None:
    """Wrap the action methods once per process (idempotent; a module that cannot be
    imported, such as Spark Connect's without its client libraries, is left alone)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    import importlib

    for (module_name, class_name), names in ACTIONS.items():
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except ImportError:
            continue
        for name in names:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__spark_action__", False):
                setattr(cls, name, _counted(name, method))


def snapshot() -> Counter:
    """Actions so far in this process, by (kind, site): the method (SQL by its statement's
    verb) and the project's line that called it."""
    with _lock:
        return Counter(_calls)


def since(start: Counter) -> Counter:
    return snapshot() - start


def seconds() -> Counter:
    """Wall seconds spent in actions so far in this process, by the keys of ``snapshot``
    (subtract an earlier call's result for a span)."""
    with _lock:
        return Counter(_seconds)


def by_kind(calls: Counter) -> Counter:
    out: Counter = Counter()
    for (kind, _), n in calls.items():
        out[kind] += n
    return out


def by_site(calls: Counter) -> Counter:
    return Counter({f"{site} {kind}": n for (kind, site), n in calls.items()})


@contextmanager
def step(context):
    """Marks the start of the asset step ``context`` runs, so ``in_step(run_id, step_key)``
    reports the actions taken since (the IO manager adds them to each output's metadata);
    the step's log gets its total and where they went when it ends.

    Keyed by run and step, not by a context variable: an asset's generator runs in its
    caller's context, and one that is abandoned (a failed step) is closed later, elsewhere.
    """
    key = (context.run_id, context.get_step_execution_context().step.key)
    _starts[key] = snapshot()
    try:
        yield
        taken = in_step(*key)
        sites = ", ".join(f"{n} {s}" for s, n in by_site(taken).most_common(12))
        context.log.info(
            f"Spark actions in this step: {total(taken)} {dict(by_kind(taken))}; "
            f"where: {sites}"
        )
    finally:
        _starts.pop(key, None)


def total(calls: Counter) -> int:
    return sum(calls.values())


def in_step(run_id: str, step_key: str) -> Counter | None:
    """Actions since that step's ``step()`` began, None outside one."""
    start = _starts.get((run_id, step_key))
    return None if start is None else since(start)


def by_step(instance, run_id: str) -> dict[str, int]:
    """Each asset step's Spark actions in run ``run_id``, as its materialisations' metadata
    records them (the largest: the last output's count includes the ones before)."""
    from dagster import DagsterEventType

    steps: dict[str, int] = {}
    for record in instance.all_logs(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ):
        event = record.dagster_event
        meta = event.event_specific_data.materialization.metadata
        if "spark_actions" in meta:
            n = meta["spark_actions"].value
            steps[event.step_key] = max(steps.get(event.step_key, 0), n)
    return steps
