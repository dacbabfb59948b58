"""What a stream is called in Dagster: the default stream keeps every name it had (nothing
changes for existing users); a declared one gets all of its own, colliding with none."""

from dagster import AssetKey, AssetSpec, Definitions

from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.pipeline import stream_parts
from anomaly_assets.stream import DEFAULT_STREAM, Stream

TABLES = {
    "bronze_events",
    "bronze_quarantine",
    "bronze_offset_ledger",
    "silver_events",
    "silver_user_profile",
    "anomaly_model",
    "gold_anomaly_predictions",
    "gold_batch_drift",
    "gold_model_monitoring",
    "gold_user_incidents",
    "gold_user_risk",
    "gold_events_enriched",
    "llm_explanation_cache",
    "ai_enrichment_eval_metrics",
    "alert_outbox",
    "analyst_feedback",
}
JOBS = {
    "ingest_job",
    "ingest_and_train_job",
    "train_model_job",
    "prompt_comparison_job",
    "optimize_tables_job",
}


def names(parts: dict) -> dict[str, set]:
    keys, ops, pools = set(), set(), set()
    for asset in parts["assets"]:
        if isinstance(asset, AssetSpec):  # external: the triage page writes it
            keys.add(asset.key)
            continue
        keys |= set(asset.keys)
        ops.add(asset.node_def.name)
        pools |= {p for p in [asset.node_def.pool] if p}
    checks = {
        (c.asset_key, c.name) for a in parts["asset_checks"] for c in a.check_specs
    }
    return {
        "keys": keys,
        "ops": ops,
        "pools": pools,
        "checks": checks,
        "jobs": {j.name for j in parts["jobs"]},
        "sensors": {s.name for s in parts["sensors"]},
        "schedules": {s.name for s in parts["schedules"]},
    }


def test_the_default_stream_keeps_todays_names():
    found = names(stream_parts(DEFAULT_STREAM))
    assert found["keys"] == {AssetKey(t) for t in TABLES}
    assert found["ops"] == {
        "bronze",
        "silver",
        "anomaly_model",
        "gold",
        "gold_user_incidents",
        "gold_user_risk",
        "enrichment",
        "ai_enrichment_eval_metrics",
        "alert_outbox",
    }
    assert found["pools"] == {
        f"anomaly_assets/{p}"
        for p in (
            "bronze",
            "silver_events",
            "anomaly_model",
            "gold",
            "gold_user_incidents",
            "gold_user_risk",
            "enrichment",
            "ai_enrichment_eval_metrics",
            "alert_outbox",
        )
    }
    assert found["jobs"] == JOBS
    assert found["sensors"] == {"kafka_offsets_sensor"}
    assert found["schedules"] == {"optimize_tables_job_schedule"}
    assert DEFAULT_STREAM.lane == {"anomaly_assets/lane": "ingestion"}


def test_a_declared_stream_has_its_own_names_and_merges_beside_the_default():
    payments = Stream(key_prefix=("payments",), group_prefix="payments_")
    default, mine = names(stream_parts(DEFAULT_STREAM)), names(stream_parts(payments))
    assert mine["keys"] == {AssetKey(["payments", t]) for t in TABLES}
    assert {k for k, _ in mine["checks"]} <= mine["keys"]
    assert {c for _, c in mine["checks"]} == {c for _, c in default["checks"]}
    assert mine["jobs"] == {f"payments__{j}" for j in JOBS}
    assert mine["sensors"] == {"payments__kafka_offsets_sensor"}
    assert all(op.startswith("payments__") for op in mine["ops"])
    assert all(p.startswith("anomaly_assets/payments__") for p in mine["pools"])
    assert payments.lane != DEFAULT_STREAM.lane
    for kind in ("keys", "ops", "pools", "jobs", "sensors", "schedules"):
        assert not default[kind] & mine[kind], kind
    # Dagster accepts both in one code location, each group under its prefix.
    merged = make_definitions(build_resources(), Definitions(**stream_parts(payments)))
    graph = merged.get_repository_def().asset_graph
    assert graph.get(AssetKey(["payments", "gold_anomaly_predictions"])).group_name == (
        "payments_gold"
    )
    assert graph.get(AssetKey("gold_anomaly_predictions")).group_name == "gold"
