"""Per-Python-worker cache of unpickled models, keyed by the model bytes' hash.

Spark reuses Python workers across tasks; a module-level dict lives as long as the worker,
so each worker unpickles a broadcast model once.
"""

MODELS: dict[str, object] = {}
