"""LLM explanations: grouping, prompts and their registry, redaction, the explainer clients and their resource, evidence checks, cache, telemetry and traces, and the enrichment assets and checks."""
