"""Shared by the steps that consume an upstream table's changes (core/cursors.py)."""

from dagster import Output


def nothing_new(context, upstream: str, through: int | None, outputs: tuple[str, ...]):
    """The outputs of a step whose upstream has no commit it has not consumed yet."""
    context.log.info(f"No {upstream} commit after version {through}: nothing to do.")
    for name in outputs:
        yield Output(None, name, metadata={f"{upstream}_version": through})
