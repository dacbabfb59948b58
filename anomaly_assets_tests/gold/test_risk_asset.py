"""gold_user_risk kept from the incidents' change feed equals the score of every user's
incidents in one pass, however the incident commits are cut into refreshes (the users of a
commit re-scored, a user whose incidents all vanish loses their row)."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from anomaly_assets.core import delta_sql
from anomaly_assets.gold.incidents import INCIDENT_SCHEMA
from anomaly_assets.gold.risk import (
    INCIDENT_INPUTS,
    RISK_COLUMNS,
    RiskWindow,
    risk_figures,
    risk_rows,
)
from anomaly_assets.gold.risk_asset import RiskConfig, refresh_risk
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.stream import DEFAULT_STREAM

T0 = datetime(2026, 11, 1, tzinfo=UTC)
USERS = ["u1", "o'hara", "DOMAIN\\alice"]
LOG = SimpleNamespace(log=SimpleNamespace(info=lambda *_: None))


def _incident(user, n, day, critical):
    t = T0 + timedelta(days=day)
    return {
        "incident_id": f"{user}-{n}",
        "user_id": user,
        "first_seen": t,
        "last_seen": t,
        "event_count": 1,
        "event_ids": [f"e{n}"],
        "event_types": ["login"],
        "top_features": ["failed_logins_10m"],
        "max_severity": 99.5,
        "max_score": 0.99,
        "status": "CRITICAL" if critical else "WARNING",
        "batch_ids": ["b"],
        "threat_types": ["credential_stuffing"] if n % 2 else [],
        "attack_techniques": ["T1110.004"] if n % 2 else [],
        "attack_tactics": [],
    }


# Each commit gives some users a new set of incidents (possibly none); a refresh may
# follow any commit.
commits = st.lists(
    st.tuples(
        st.dictionaries(
            st.sampled_from(USERS),
            st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=4),
            min_size=1,
        ),
        st.booleans(),
    ),
    min_size=1,
    max_size=5,
)


def _risk(spark, path):
    rows = spark.read.format("delta").load(path).select(*RISK_COLUMNS).collect()
    return sorted((r["user_id"], r["risk_score"], r["risk_level"]) for r in rows)


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(commits=commits)
# a user's incidents all vanish (re-scored as normal): their row goes
@example(
    commits=[({"u1": [(0, True)], "o'hara": [(1, False)]}, True), ({"u1": []}, True)]
)
def test_incremental_risk_equals_one_pass(
    spark, spark_resource, tmp_path_factory, commits
):
    lake = LakehouseResource(
        root=str(tmp_path_factory.mktemp("risk")), spark=spark_resource
    )
    incidents_path = lake.path("gold_user_incidents")
    config = RiskConfig(window_days=20, half_life_days=3)
    for n, (by_user, refresh) in enumerate(commits):
        rows = [
            _incident(u, 100 * n + k, day, critical)
            for u, sets in by_user.items()
            for k, (day, critical) in enumerate(sets)
        ]
        frame = spark.createDataFrame(
            [tuple(r.values()) for r in rows], INCIDENT_SCHEMA
        )
        writer = frame.write.format("delta").mode("overwrite")
        if delta_sql.exists(spark, incidents_path):
            users = ", ".join(delta_sql.literal(u) for u in by_user)
            writer = writer.option("replaceWhere", f"user_id IN ({users})")
        writer.save(incidents_path)
        if refresh or n == len(commits) - 1:
            refresh_risk(LOG, config, lake, DEFAULT_STREAM)
    incidents = lake.read("gold_user_incidents")
    everyone = delta_sql.collect_utc(incidents.select(*INCIDENT_INPUTS), ["last_seen"])
    expected = risk_rows(everyone, RiskWindow(20, 3))
    got = (
        _risk(spark, lake.path("gold_user_risk"))
        if lake.exists("gold_user_risk")
        else []
    )
    assert got == sorted(
        (r["user_id"], r["risk_score"], r["risk_level"]) for r in expected
    )


def test_the_check_counts_each_kind_of_wrong_row():
    rows = risk_rows(
        [_incident(u, n, n, n % 2 == 0) for n, u in enumerate(USERS * 2)],
        RiskWindow(),
    )
    assert risk_figures(rows) == {
        "rows_checked": 3,
        "score_out_of_range": 0,
        "level_not_the_scores": 0,
        "contributions_not_the_score": 0,
        "rows_without_incidents": 0,
    }
    broken = [
        {**rows[0], "risk_level": "critical", "risk_score": rows[0]["risk_score"] + 1},
        {**rows[1], "incident_count": 0, "risk_score": 100.0, "risk_level": "critical"},
        rows[2],
    ]
    figures = risk_figures(broken)
    assert figures["level_not_the_scores"] == 1
    assert figures["contributions_not_the_score"] == 2
    assert figures["rows_without_incidents"] == 1
    assert figures["score_out_of_range"] == 1
