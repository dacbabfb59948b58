"""Versioned prompt files. A prompt's version is its file name plus a hash of its content, so
any edit to the text is a new version, recorded on every row and in every evaluation."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

PROMPT_DIR = Path(__file__).parent / "prompts"
DEFAULT_PROMPT = "explain_anomalies_v1"


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str

    @property
    def version(self) -> str:
        digest = hashlib.sha256(self.text.encode()).hexdigest()[:10]
        return f"{self.name}@{digest}"


def load_prompt(name: str = DEFAULT_PROMPT, directory: Path = PROMPT_DIR) -> Prompt:
    path = directory / f"{name}.md"
    if not path.exists():
        known = sorted(p.stem for p in directory.glob("*.md"))
        raise FileNotFoundError(
            f"No prompt {name!r} in {directory}; known prompts: {known}"
        )
    return Prompt(name, path.read_text())
