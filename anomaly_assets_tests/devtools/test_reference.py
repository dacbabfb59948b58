"""docs/reference.md is what the code defines today: every quarantine reason, skip reason
and feature has its row, with the text the code gives it."""

from pathlib import Path

from anomaly_assets.devtools.reference import render
from anomaly_assets.ingestion.ledger import SKIP_REASONS
from anomaly_assets.ingestion.validation import REASONS
from anomaly_assets.silver.features import FEATURES

PAGE = Path(__file__).parents[2] / "docs" / "reference.md"


def test_the_reference_page_is_current():
    assert PAGE.read_text() == render(), (
        "docs/reference.md is stale: python -m anomaly_assets.devtools.reference "
        "> docs/reference.md"
    )


def test_every_code_and_feature_has_a_row_with_its_text():
    rows = {
        line.split("|")[1].strip(): line
        for line in render().splitlines()
        if line.startswith("| `")
    }
    for code, (meaning, action) in {**REASONS, **SKIP_REASONS}.items():
        row = rows[f"`{code}`"]
        assert " ".join(meaning.split()) in row and " ".join(action.split()) in row
    for name, doc in FEATURES.items():
        assert " ".join(doc.split()).replace("|", "\\|") in rows[f"`{name}`"]
