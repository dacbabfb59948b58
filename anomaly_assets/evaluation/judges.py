"""Judges of a batch's explanations, with ``mlflow.genai.evaluate`` on the calls' traces.

Two LLM judges on the configured endpoint (faithfulness to the evidence sent, and whether
the recommended action is a step an analyst can take), and the deterministic evidence
checks as a code scorer. The assessments attach to the call traces (the MLflow UI shows
them beside each call); the batch's figures are the pass rates and the agreement of the
faithfulness judge with the evidence checks, on the calls both graded. With the offline
explainer there is no model to judge with: only the code scorer runs, and the figures say so
(``judge_model`` is empty, the judges' rates are null).
"""

import json
from dataclasses import dataclass

from anomaly_assets.enrichment.evidence import violations
from anomaly_assets.enrichment.schema import AnomalyExplanation

#: Statuses whose call returned an explanation to grade (the rest have no answer).
GRADED = ("ok", "ungrounded")
FAITHFULNESS = (
    "You grade an explanation of anomalies against the evidence it was written from. "
    "{{ inputs }} holds the messages sent to the explainer: its instructions, then the "
    "evidence as JSON (the group's contributions, feature definitions, severity statuses "
    "and examples). {{ outputs }} holds its answer, an explanation as JSON. Answer true "
    "if the explanation is faithful to the evidence: every factor it names is among the "
    "contributions, every figure it states is in the evidence, and its risk level fits "
    "the severity statuses. Answer false otherwise."
)
ACTIONABILITY = (
    "You grade the recommended_action of an explanation of anomalies. {{ outputs }} holds "
    "the explanation as JSON; {{ inputs }} holds the evidence it was written from. Answer "
    "true if the action is a concrete step an analyst can take now for these anomalies "
    "(for example block a source, lock or reset an account, verify with the user); false "
    "if it is vague or only says to keep watching."
)


def _evidence_and_answer(inputs: dict, outputs: dict):
    payload = json.loads(inputs["messages"][1]["content"])
    return payload, AnomalyExplanation.model_validate_json(outputs["answer"])


def scorers(judge_model: str | None, timeout_s: float) -> list:
    """The evidence checks, and the two judges when there is a model to judge with."""
    from mlflow.entities import Feedback
    from mlflow.genai.judges import make_judge
    from mlflow.genai.scorers import scorer

    @scorer(name="evidence_checks")
    def evidence_checks(inputs, outputs) -> Feedback:
        payload, answer = _evidence_and_answer(inputs, outputs)
        problems = violations(answer, payload)
        return Feedback(
            value=not problems,
            rationale="; ".join(problems) or "passes the evidence checks",
        )

    out = [evidence_checks]
    if judge_model:
        for name, instructions in (
            ("faithfulness", FAITHFULNESS),
            ("actionability", ACTIONABILITY),
        ):
            judge = make_judge(
                name=name,
                instructions=instructions,
                model=judge_model,
                feedback_value_type=bool,
            )
            judge.timeout = timeout_s  # MLflow retries a failing endpoint for minutes
            out.append(judge)
    return out


@dataclass
class JudgeFigures:
    judged_calls: int
    evidence_pass_pct: float | None
    judge_faithful_pct: float | None
    judge_actionable_pct: float | None
    judge_agreement_pct: float | None
    judge_errors: int


def _pct(values) -> float | None:
    values = [v is True for v in values]  # a judge's "no" (a string) is not a pass
    return 100.0 * sum(values) / len(values) if values else None


def figures(result_df) -> JudgeFigures:
    """The batch's figures from ``evaluate``'s per-call table (a judge that failed on a
    call leaves no value there: counted in ``judge_errors``, not in the rates)."""
    import pandas as pd

    def column(name):
        key = f"{name}/value"
        if key not in result_df:
            return [None] * len(result_df)
        return [None if pd.isna(v) else v for v in result_df[key]]

    evidence, faithful, actionable = (
        column(n) for n in ("evidence_checks", "faithfulness", "actionability")
    )
    both = [
        (e, f) for e, f in zip(evidence, faithful) if e is not None and f is not None
    ]
    judged = "faithfulness/value" in result_df
    return JudgeFigures(
        judged_calls=len(result_df),
        evidence_pass_pct=_pct(v for v in evidence if v is not None),
        judge_faithful_pct=_pct(v for v in faithful if v is not None),
        judge_actionable_pct=_pct(v for v in actionable if v is not None),
        judge_agreement_pct=_pct((e is True) == (f is True) for e, f in both),
        judge_errors=sum(v is None for v in faithful + actionable) if judged else 0,
    )


def judge_traces(traces, judge_model: str | None, timeout_s: float) -> JudgeFigures:
    """Grade ``traces`` (a ``search_traces`` frame of explanation calls) in the active
    MLflow run; returns the figures."""
    import mlflow

    if traces.empty:
        return figures(traces)
    result = mlflow.genai.evaluate(data=traces, scorers=scorers(judge_model, timeout_s))
    return figures(result.result_df)
