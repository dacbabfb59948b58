"""The judges' figures from mlflow.genai.evaluate's per-call table."""

import pandas as pd
import pytest

from anomaly_assets.evaluation.judges import figures


def test_only_true_passes_and_missing_grades_count_as_errors():
    table = pd.DataFrame(
        {
            "evidence_checks/value": [True, False, True, True],
            "faithfulness/value": [True, True, None, "no"],
            "actionability/value": [True, False, True, None],
        }
    )
    got = figures(table)
    assert got.judged_calls == 4 and got.judge_errors == 2
    assert got.evidence_pass_pct == 75.0
    assert got.judge_faithful_pct == pytest.approx(200 / 3)  # "no" is not a pass
    assert got.judge_actionable_pct == pytest.approx(200 / 3)
    # calls both graded: agree on the first, not on the second and fourth
    assert got.judge_agreement_pct == pytest.approx(100 / 3)


def test_without_judges_only_the_evidence_checks_count():
    got = figures(pd.DataFrame({"evidence_checks/value": [True, False]}))
    assert (got.judged_calls, got.evidence_pass_pct, got.judge_errors) == (2, 50.0, 0)
    assert got.judge_faithful_pct is None and got.judge_agreement_pct is None
