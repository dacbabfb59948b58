"""Per-Python-worker cache of unpickled models and their explainers, keyed by the model
bytes' hash.

Spark reuses Python workers across tasks; a module-level dict lives as long as the worker,
so each worker unpickles a model, and parses its trees for the explainer, once.
"""

MODELS: dict[str, tuple] = {}
