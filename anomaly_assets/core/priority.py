"""The order of a run's steps where several are ready: the in-process executor starts the
one with the highest ``dagster/priority`` first. The rows come first (bronze to
gold_events_enriched, priority 0), then what tells people (incidents, risk, alerts), then
the evaluation, then the non-blocking checks, so a warning about one table never delays the
next table's rows or an alert. Blocking checks keep priority 0: downstream waits for them by
design."""

#: gold_user_incidents, gold_user_risk, alert_outbox: after the enriched rows, whose
#: explanations the alerts carry.
AFTER_ROWS = {"dagster/priority": "-1"}
#: ai_enrichment_eval_metrics: nobody waits for it.
EVALUATION = {"dagster/priority": "-2"}
#: Non-blocking check ops: after every asset step that is ready.
AFTER_ASSETS = {"dagster/priority": "-3"}
