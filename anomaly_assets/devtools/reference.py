"""docs/reference.md: the quarantine reasons, ledger skip reasons and silver features, from
the code that defines them, so the page cannot drift from it (a test compares them).
Regenerate after changing one::

    python -m anomaly_assets.devtools.reference > docs/reference.md
"""

from anomaly_assets.ingestion.ledger import SKIP_REASONS
from anomaly_assets.ingestion.validation import REASONS
from anomaly_assets.silver.catalogue import THREAT_FEATURES
from anomaly_assets.silver.features import FEATURES


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: tuple[str, ...], rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _codes(title: str, intro: str, column: str, codes: dict) -> list[str]:
    """A section of codes, each with what it means and what an operator does."""
    rows = ((f"`{code}`", meaning, action) for code, (meaning, action) in codes.items())
    return [
        f"## {title}",
        "",
        intro,
        "",
        *_table((column, "what it means", "what an operator does"), rows),
        "",
    ]


def render() -> str:
    threats = {f: t for t, features in THREAT_FEATURES.items() for f in features}
    lines = [
        "# Reference: reason codes and features",
        "",
        (
            "Generated from the code (`python -m anomaly_assets.devtools.reference`); a test "
            "fails while this page is stale. Why the validator and the ledger work as they do: "
            "[reliability](reliability.md); how the features are computed across batches: "
            "[assets](assets.md)."
        ),
        "",
        *_codes(
            "Quarantine reasons",
            "Every message bronze refuses is one `bronze_quarantine` row with one of these "
            "in `reason` and the field in `reason_detail`.",
            "reason",
            REASONS,
        ),
        *_codes(
            "Ledger skip reasons",
            "Offsets that hold no record to land are counted in `bronze_offset_ledger` with "
            "one of these reasons.",
            "skip reason",
            SKIP_REASONS,
        ),
        "## Silver features",
        "",
        (
            "Per user, over event-time windows that reach into earlier batches. The threat "
            "column names the threat forest that reads the feature; the forest over every "
            "feature reads them all."
        ),
        "",
        *_table(
            ("feature", "definition", "threat forest"),
            (
                (f"`{name}`", doc, threats.get(name, "").replace("_", " "))
                for name, doc in FEATURES.items()
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
