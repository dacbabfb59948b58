"""silver from bounded state, through the real asset: bronze commits in, silver_events and
silver_user_profile out, as the sensor's runs would see them.

The hand-made sequence of silver/test_features.py arrives cut into batches in different ways and
in a different order (within the allowed lateness): every cut gives the features of the
whole sequence computed at once. An event later than the allowed lateness is flagged and
folded; a step redone after a crash (its cursor lost) rewrites nothing.
"""

import pytest
from dagster import materialize

from anomaly_assets.core import cursors
from anomaly_assets.io_managers.delta import DeltaIOManager
from anomaly_assets.silver.assets import silver
from anomaly_assets.silver.features import FEATURE_COLUMNS, silver_rows
from anomaly_assets.silver.geo import country_centres, haversine_km
from anomaly_assets_tests.helpers import delta_rows
from anomaly_assets_tests.silver.test_features import SCHEMA, T0, U1, _rows

DESK = ("desktop", "UA1")
U2 = [(s + 1, "login", False, None, None, "FR", "Z", DESK, None) for s in (0, 30, 90)]


def _events(spark):
    rows = _rows("u1", U1) + _rows("u2", U2, 100)
    return spark.createDataFrame(rows, SCHEMA)


def _land(spark, lakehouse, events, ids):
    """One bronze commit holding ``ids`` (as the bronze step appends a batch)."""
    from pyspark.sql import functions as F

    batch = events.filter(events.event_id.isin(list(ids)))
    batch = batch.withColumn("batch_id", F.lit("b-" + "-".join(ids)))
    batch.write.format("delta").mode("append").save(lakehouse.path("bronze_events"))


def _silver(lakehouse, lateness=3600):
    result = materialize(
        [silver],
        resources={
            "lakehouse": lakehouse,
            "io_manager": DeltaIOManager(lakehouse=lakehouse),
        },
        run_config={"ops": {"silver": {"config": {"allowed_lateness_s": lateness}}}},
    )
    assert result.success
    return result


def _features(lakehouse):
    return {
        r["event_id"]: {c: r[c] for c in (*FEATURE_COLUMNS, "late")}
        for r in delta_rows(lakehouse, "silver_events")
    }


def _whole_sequence(events) -> dict:
    """Features of every event computed at once, by event id."""
    return {
        r["event_id"]: {c: r[c] for c in (*FEATURE_COLUMNS, "late")}
        for r in silver_rows(events).collect()
    }


def _assert_features(lakehouse, expected: dict) -> None:
    got = _features(lakehouse)
    assert set(got) == set(expected)
    for event_id, row in expected.items():
        assert got[event_id] == pytest.approx(row), event_id


def _ids(*indexes):
    return tuple(f"u1-{i}" for i in indexes)


# Arrival orders: each is a list of batches; events within a batch and across batches
# arrive out of event-time order, but never more than an hour after a newer event.
CUTS = {
    "one_batch": [_ids(*range(8)) + ("u2-0", "u2-1", "u2-2")],
    "out_of_order": [
        _ids(1, 3) + ("u2-2",),
        _ids(0) + ("u2-0",),
        _ids(4, 2) + ("u2-1",),
        _ids(7),
        _ids(5, 6),
    ],
}


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_any_cut_within_lateness_gives_the_whole_sequence_features(
    spark, lakehouse, cut
):
    events = _events(spark)
    expected = _whole_sequence(events)
    for ids in CUTS[cut]:
        _land(spark, lakehouse, events, ids)
        _silver(lakehouse)
    _assert_features(lakehouse, expected)
    profiles = {r["user_id"]: r for r in delta_rows(lakehouse, "silver_user_profile")}
    # u1's newest event is at 7260 s: everything before 7260 - 3600 s is folded.
    assert profiles["u1"]["events"] == 5
    assert {c["value"] for c in profiles["u1"]["countries"]} == {"US", "DE"}


H = 3600
# u3 travels over two days; the comments give distinct_countries_24h at each event. The DE
# hour holds two events (2 H, 2 H + 10 s): at 26 H + 5 s only the second is in the window.
TRAVEL = [
    (0, "US"),
    (30, "US"),
    (2 * H, "DE"),
    (2 * H + 10, "DE"),
    (5 * H, "FR"),
    (20 * H, "US"),  # US DE FR
    (24 * H, "US"),  # 0 s is exactly 24 h back: US DE FR
    (24 * H + 31, "JP"),  # US (20 H) DE FR JP
    (26 * H + 5, "JP"),  # DE (2 H + 10 s) FR US JP
    (26 * H + 11, "US"),  # FR US JP
    (29 * H + 1, "BR"),  # US JP BR
    (29 * H + 30, "RU", False),  # a failed login: US JP BR and its own RU
    (50 * H, "CA"),  # JP US BR CA (not RU); previous event 21 h before, long out of the
    # raw hour; previous place BR (travel skips the failed login)
]


def _travel_events(spark):
    """u3's TRAVEL plus u4, active every 20 minutes for 52 hours, who keeps the watermark
    moving, so each batch reads u3's older hours only as a country summary."""
    rows = _rows(
        "u3",
        [
            (t, "login", ok, None, None, c, "A", DESK, None)
            for t, c, ok in ((*e, True)[:3] for e in TRAVEL)
        ],
    )
    u4 = [
        (t, "page_view", None, None, None, ("US", "CA")[t // (7 * H) % 2], "B", DESK, 5)
        for t in range(0, 52 * H, 1200)
    ]
    return spark.createDataFrame(rows + _rows("u4", u4, 1000), SCHEMA)


def test_hours_read_as_a_country_summary_give_the_whole_sequence_features(
    spark, lakehouse
):
    """Batches of 13 hours: every later batch reads the hours long before it as
    ``country_summary`` rows; features equal the whole sequence computed at once."""
    from pyspark.sql import functions as F

    events = _travel_events(spark)
    expected = _whole_sequence(events)
    u3 = [expected[f"u3-{i}"]["distinct_countries_24h"] for i in range(len(TRAVEL))]
    assert u3 == [1, 1, 2, 2, 3, 3, 3, 4, 4, 3, 3, 4, 4]
    assert expected["u3-12"]["seconds_since_prev"] == 50 * H - (29 * H + 30)
    centres = country_centres()
    assert expected["u3-12"]["travel_speed_kmh"] == pytest.approx(
        haversine_km(centres["BR"], centres["CA"]) / ((50 * H - (29 * H + 1)) / 3600)
    )
    hours = F.floor((F.col("event_time").cast("long") - int(T0.timestamp())) / (13 * H))
    for (k,) in events.select(hours.alias("k")).distinct().orderBy("k").collect():
        ids = [r.event_id for r in events.filter(hours == k).collect()]
        _land(spark, lakehouse, events, ids)
        _silver(lakehouse)
    _assert_features(lakehouse, expected)


def test_later_than_the_lateness_is_flagged_folded_and_corrects_nothing(
    spark, lakehouse
):
    events = _events(spark)
    _land(spark, lakehouse, events, _ids(*range(1, 8)))
    _silver(lakehouse, lateness=600)
    before = _features(lakehouse)
    _land(spark, lakehouse, events, _ids(0))  # 7260 s behind the newest event
    result = _silver(lakehouse, lateness=600)
    after = _features(lakehouse)
    assert after["u1-0"]["late"] == 1
    assert {k: v for k, v in after.items() if k != "u1-0"} == before
    meta = result.asset_materializations_for_node("silver")[0].metadata
    assert meta["late_events"].value == 1
    profile = {r["user_id"]: r for r in delta_rows(lakehouse, "silver_user_profile")}
    # Folded: the events before 7260 - 600 s (60, 120, 240, 1200 s) and the late one.
    assert profile["u1"]["events"] == 5


def test_a_step_redone_after_losing_its_cursor_changes_nothing(spark, lakehouse):
    events = _events(spark)
    _land(spark, lakehouse, events, _ids(0, 1, 2, 3, 4))
    _silver(lakehouse)
    spark_ = lakehouse.spark_session
    kept = cursors.read_cursor(spark_, lakehouse.root, "silver_events", "bronze_events")
    _land(spark, lakehouse, events, _ids(5, 6, 7) + ("u2-0", "u2-1", "u2-2"))
    _silver(lakehouse)
    silver_after, profile_after = (
        _features(lakehouse),
        delta_rows(lakehouse, "silver_user_profile"),
    )
    versions = {
        t: cursors.table_version(spark_, lakehouse.path(t))
        for t in ("silver_events", "silver_user_profile")
    }
    # The crash: outputs written, cursor not. The retry reads the same commits again.
    cursors.write_cursor(spark_, lakehouse.root, kept)
    _silver(lakehouse)
    assert _features(lakehouse) == silver_after

    def strip(rows):
        return sorted(
            ({k: v for k, v in r.items() if k != "updated_at"} for r in rows),
            key=lambda r: r["user_id"],
        )

    assert strip(delta_rows(lakehouse, "silver_user_profile")) == strip(profile_after)
    # Nothing changed, so neither table has a new commit (not even a MERGE that copies).
    assert {
        t: cursors.table_version(spark_, lakehouse.path(t)) for t in versions
    } == versions
