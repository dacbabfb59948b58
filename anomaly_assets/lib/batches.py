"""Incremental processing by batch: which upstream batches a downstream table lacks."""


def pending_batch_ids(upstream, downstream) -> list[str]:
    """Batch ids in ``upstream`` with no row in ``downstream`` (None = not written yet).

    A batch whose rows all fell out downstream (all duplicates, say) is simply re-checked on
    the next run: cheap, and the insert-only MERGE keeps it idempotent.
    """
    seen = (
        set()
        if downstream is None
        else {r[0] for r in downstream.select("batch_id").distinct().collect()}
    )
    return sorted(
        r[0]
        for r in upstream.select("batch_id").distinct().collect()
        if r[0] not in seen
    )
