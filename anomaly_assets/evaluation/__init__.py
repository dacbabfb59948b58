"""Evaluation of the explanations: per-batch metrics, judges, the ai_enrichment_eval_metrics asset and its checks."""
