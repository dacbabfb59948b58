"""Plain helpers every layer uses: Delta SQL, change cursors, pruning predicates, Spark action counting, what a check reads, column lineage."""
