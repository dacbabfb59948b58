"""LLM explanations: output model, prompts, redaction, grouping, and the explainer clients."""
