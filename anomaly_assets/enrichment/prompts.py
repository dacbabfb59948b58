"""Prompts: a name, a version and the system text.

The enrichment takes its prompt from MLflow's Prompt Registry (enrichment/prompt_registry.py), the
version behind an alias. The files in ``prompts/`` are what a new registry starts from, and
what comparisons may name directly: a file's version is a hash of its text, so any edit to it
is a new version.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

PROMPT_DIR = Path(__file__).parent / "prompts"
DEFAULT_PROMPT = "explain_anomalies_v1"


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    version: str

    @property
    def label(self) -> str:
        """``name/version``, as MLflow's ``prompts:/name/version`` URIs say it."""
        return f"{self.name}/{self.version}"

    @property
    def key(self) -> str:
        """``name/version@hash`` of the text: what the cache keys on, so an answer is never
        reused for another text under the same number (a new tracking store, say)."""
        return f"{self.label}@{_digest(self.text)}"


def load_prompt(name: str = DEFAULT_PROMPT, directory: Path = PROMPT_DIR) -> Prompt:
    """A prompt file, versioned by its content."""
    path = directory / f"{name}.md"
    if not path.exists():
        known = sorted(p.stem for p in directory.glob("*.md"))
        raise FileNotFoundError(
            f"No prompt {name!r} in {directory}; known prompts: {known}"
        )
    text = path.read_text()
    return Prompt(name, text, _digest(text))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]
