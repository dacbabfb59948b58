"""The enrichment checks answered from one aggregation give the verdicts a row-by-row
evaluation gives, on any mix of rows (hypothesis, through the test session's Spark)."""

from hypothesis import given
from hypothesis import strategies as st

from anomaly_assets.enrichment.checks import (
    EnrichmentChecksConfig,
    enrichment_counts,
    enrichment_results,
)
from anomaly_assets.enrichment.statuses import EXPLAINED, PARSED, STATUSES
from anomaly_assets_tests.helpers import (
    CHECK_PROPERTY_SETTINGS,
    check_specs,
    verdicts,
)

FEATURES = ["a", "b", "c"]

enriched_rows = st.lists(
    st.fixed_dictionaries(
        {
            "event_id": st.uuids().map(str),
            "enrichment_status": st.sampled_from(STATUSES),
            "anomaly_status": st.sampled_from(["CRITICAL", "HIGH", "MEDIUM"]),
            "will_retry": st.sampled_from([None, True, False]),
            "top_factors": st.lists(st.sampled_from(FEATURES), unique=True),
            "top_features": st.lists(st.sampled_from(FEATURES), unique=True),
        }
    ),
    max_size=25,
)
ENRICHED = (
    "event_id string, enrichment_status string, anomaly_status string, will_retry "
    "boolean, top_factors array<string>, top_features array<string>"
)


@CHECK_PROPERTY_SETTINGS
@given(rows=enriched_rows, min_validity=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_enrichment_checks_agree_with_row_by_row(spark, rows, min_validity):
    config = EnrichmentChecksConfig(min_validity=min_validity, min_grounded=0.75)
    counts = enrichment_counts(spark.createDataFrame(rows, ENRICHED))
    specs = check_specs(
        "enrichment_validity", "critical_anomalies_explained", "explanations_grounded"
    )
    got = verdicts(enrichment_results(specs, counts, config))

    attempted = [r for r in rows if r["enrichment_status"] != "skipped_budget"]
    parsed = [r for r in attempted if r["enrichment_status"] in PARSED]
    grounded = [
        r
        for r in parsed
        if r["enrichment_status"] in EXPLAINED
        and set(r["top_factors"]) <= set(r["top_features"])
    ]
    spent = [
        r
        for r in rows
        if r["anomaly_status"] == "CRITICAL"
        and r["enrichment_status"] not in EXPLAINED
        and not r["will_retry"]
    ]
    assert got == {
        "enrichment_validity": (len(parsed) / len(attempted) if attempted else 1.0)
        >= min_validity,
        "critical_anomalies_explained": not spent,
        "explanations_grounded": (len(grounded) / len(parsed) if parsed else 1.0)
        >= 0.75,
    }
