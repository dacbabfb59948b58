"""The explanation prompt in MLflow's Prompt Registry: its versions, and the aliases that
choose one.

- ``production``: the version the enrichment uses. Each run reads the alias afresh, so
  moving it changes the next run's prompt with no code change and no restart.
- ``previous``: where ``production`` pointed before the last promotion; ``rollback`` moves
  ``production`` back to it in one step (and a second rollback undoes the first).
- ``candidate``: a version run in shadow. The evaluation explains each new batch's groups
  with it too and writes its figures as evaluation rows (``prompt_role = shadow``); its
  answers never reach gold_events_enriched.

A registry without the prompt gets the project's default prompt file as version 1, behind
``production``. Command line: ``anomaly-prompts show | register FILE | promote VERSION |
rollback | candidate VERSION | clear-candidate``.
"""

import argparse
import sys

from anomaly_assets.enrichment.prompts import (
    DEFAULT_PROMPT,
    PROMPT_DIR,
    Prompt,
    load_prompt,
)
from anomaly_assets.resources.mlflow import MlflowResource

PROMPT_NAME = "anomaly_explanation"
PRODUCTION, PREVIOUS, CANDIDATE = "production", "previous", "candidate"


class PromptRegistry:
    """Prompt versions and aliases in the MLflow registry at ``tracking_uri``."""

    def __init__(self, tracking_uri: str, name: str = PROMPT_NAME) -> None:
        self.tracking_uri, self.name = tracking_uri, name

    def _mlflow(self):
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return mlflow

    def _load(self, reference: str):
        """MLflow's prompt version at ``prompts:/name<reference>``, or None when the
        prompt, version or alias does not exist. Any other failure (the store down, a
        locked database) raises: it must not read as "not set"."""
        return self._mlflow().genai.load_prompt(
            f"prompts:/{self.name}{reference}",
            allow_missing=True,
            link_to_model=False,
            cache_ttl_seconds=0,
        )

    def version_of(self, alias: str) -> int | None:
        """The version behind ``alias``, or None when the alias (or prompt) is not set."""
        found = self._load(f"@{alias}")
        return None if found is None else int(found.version)

    def load(self, alias: str = PRODUCTION) -> Prompt | None:
        """The prompt version behind ``alias`` (read afresh), or None."""
        found = self._load(f"@{alias}")
        return None if found is None else _prompt(found)

    def get(self, version: int) -> Prompt:
        found = self._load(f"/{version}")
        if found is None:
            raise LookupError(f"No version {version} of prompt {self.name!r}")
        return _prompt(found)

    def register(self, text: str, message: str) -> int:
        """A new version of the prompt (no alias moves)."""
        registered = self._mlflow().genai.register_prompt(
            self.name, text, commit_message=message
        )
        return int(registered.version)

    def production(self) -> Prompt:
        """The production prompt; a registry without the prompt is seeded first."""
        prompt = self.load(PRODUCTION)
        if prompt is not None:
            return prompt
        if self.latest_version() is not None:
            raise LookupError(
                f"Prompt {self.name!r} has versions but no {PRODUCTION!r} alias: promote "
                f"one with `anomaly-prompts promote VERSION`"
            )
        seed = load_prompt(DEFAULT_PROMPT)
        version = self.register(
            seed.text, f"seeded from {PROMPT_DIR.name}/{seed.name}.md"
        )
        self._alias(PRODUCTION, version)
        return self.get(version)

    def latest_version(self) -> int | None:
        return self.version_of("latest")

    def _alias(self, alias: str, version: int) -> None:
        self._mlflow().genai.set_prompt_alias(self.name, alias, version)

    def _drop_alias(self, alias: str) -> None:
        if self.version_of(alias) is not None:
            self._mlflow().genai.delete_prompt_alias(self.name, alias)

    def promote(self, version: int) -> tuple[int | None, int]:
        """Point ``production`` at ``version``; ``previous`` keeps the one it replaces.
        Returns (old, new)."""
        self.get(version)  # a missing version fails here, before any alias moves
        old = self.version_of(PRODUCTION)
        if old is not None and old != version:
            self._alias(PREVIOUS, old)
        self._alias(PRODUCTION, version)
        if self.version_of(CANDIDATE) == version:
            self._drop_alias(CANDIDATE)
        return old, version

    def rollback(self) -> tuple[int, int]:
        """Swap ``production`` and ``previous``: one step back (or forward again).
        Returns (old, new)."""
        current, previous = self.version_of(PRODUCTION), self.version_of(PREVIOUS)
        if current is None or previous is None:
            raise LookupError(
                f"Nothing to roll back to: prompt {self.name!r} has "
                f"{PRODUCTION}={current} and {PREVIOUS}={previous}"
            )
        self._alias(PRODUCTION, previous)
        self._alias(PREVIOUS, current)
        return current, previous

    def set_candidate(self, version: int) -> None:
        self.get(version)
        self._alias(CANDIDATE, version)

    def clear_candidate(self) -> None:
        self._drop_alias(CANDIDATE)

    def describe(self) -> str:
        aliases = {a: self.version_of(a) for a in (PRODUCTION, PREVIOUS, CANDIDATE)}
        shown = ", ".join(f"{a}={v}" for a, v in aliases.items() if v is not None)
        return (
            f"{self.name}: latest version {self.latest_version()}; "
            f"{shown or 'no aliases'}"
        )


def _prompt(found) -> Prompt:
    return Prompt(found.name, found.template, str(found.version))


def resolve(reference: str, registry: PromptRegistry) -> Prompt:
    """A prompt for comparisons: ``name@alias`` or ``name/version`` from the registry, or
    else the name of a file in enrichment/prompts/."""
    if "@" in reference or "/" in reference:
        name, alias = reference.split("@", 1) if "@" in reference else (reference, None)
        named = PromptRegistry(registry.tracking_uri, name.split("/")[0])
        if alias is not None:
            prompt = named.load(alias)
            if prompt is None:
                raise LookupError(f"No prompt behind {reference!r}")
            return prompt
        version = reference.split("/", 1)[1]
        if not version.isdigit():
            raise LookupError(f"{reference!r}: a version is a number (name/2)")
        return named.get(int(version))
    return load_prompt(reference)


def main(argv: list[str] | None = None) -> int:
    """``anomaly-prompts``: show, register, promote, roll back, set a shadow candidate."""
    from mlflow.exceptions import MlflowException

    parser = argparse.ArgumentParser(
        prog="anomaly-prompts", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tracking-uri", default=MlflowResource().tracking_uri)
    parser.add_argument("--name", default=PROMPT_NAME)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="versions and aliases")
    register = sub.add_parser("register", help="a prompt file as a new version")
    register.add_argument("file")
    register.add_argument("--message", default=None)
    for command, what in (
        ("promote", "point production at VERSION (previous keeps the old one)"),
        ("candidate", "run VERSION in shadow beside production"),
    ):
        sub.add_parser(command, help=what).add_argument("version", type=int)
    sub.add_parser("rollback", help="production back to previous, in one step")
    sub.add_parser("clear-candidate", help="stop the shadow runs")
    args = parser.parse_args(argv)
    registry = PromptRegistry(args.tracking_uri, args.name)
    try:
        if args.command == "register":
            with open(args.file) as handle:
                text = handle.read()
            version = registry.register(text, args.message or f"from {args.file}")
            print(f"registered {args.name} version {version}")
        elif args.command == "promote":
            old, new = registry.promote(args.version)
            print(f"{PRODUCTION}: {old} -> {new}")
        elif args.command == "rollback":
            old, new = registry.rollback()
            print(f"{PRODUCTION}: {old} -> {new} (rolled back)")
        elif args.command == "candidate":
            registry.set_candidate(args.version)
            print(f"{CANDIDATE}: {args.version} (runs in shadow)")
        elif args.command == "clear-candidate":
            registry.clear_candidate()
            print(f"{CANDIDATE}: cleared")
        print(registry.describe())
    except (LookupError, OSError) as exc:
        print(f"anomaly-prompts: {exc}", file=sys.stderr)
        return 1
    except MlflowException as exc:
        print(f"anomaly-prompts: MLflow at {args.tracking_uri}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


def registered_prompt(mlflow_settings: MlflowResource, name: str, alias: str):
    """The prompt version behind ``alias`` in the registry, read afresh; a registry without
    the prompt is seeded with the default file behind ``production``."""
    from dagster import Failure
    from mlflow.exceptions import MlflowException

    registry = PromptRegistry(mlflow_settings.tracking_uri, name)
    try:
        prompt = registry.production() if alias == PRODUCTION else registry.load(alias)
    except MlflowException as exc:
        raise Failure(
            f"The prompt could not be read from MLflow at {mlflow_settings.tracking_uri} "
            f"({exc}); the run explains nothing until it can (a later run retries)."
        ) from exc
    if prompt is None:
        raise Failure(
            f"Prompt {name!r} has no alias {alias!r} in {mlflow_settings.tracking_uri}: "
            f"set one with `anomaly-prompts --name {name} promote VERSION` or choose "
            "another prompt_alias."
        )
    return prompt
