"""What can become of an anomaly's explanation: the ``enrichment_status`` values and the
groups of them the checks, the evaluation and the retries use. Apart from enrich.py so the
definitions load without pandas."""

STATUSES = (
    "ok",
    "invalid",
    "ungrounded",
    "error",
    "skipped_budget",
    "cached",
    "endpoint_unreachable",
)
#: Statuses of a row with a usable explanation.
EXPLAINED = ("ok", "cached")
#: Statuses of a row whose answer parsed into the schema: the explained ones and those that
#: failed the evidence checks.
PARSED = (*EXPLAINED, "ungrounded")
#: Statuses a later run explains again (within the runs allowed).
RETRYABLE = ("error", "endpoint_unreachable", "skipped_budget", "invalid", "ungrounded")
