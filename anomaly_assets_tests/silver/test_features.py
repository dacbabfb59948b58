"""Silver's window features on a hand-made sequence, with values worked out by hand."""

import itertools
import math
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomaly_assets.silver.features import EVENT_COLUMNS, FEATURE_COLUMNS, silver_rows
from anomaly_assets.silver.geo import country_centres, haversine_km

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
DESK = ("desktop", "UA1")
PHONE = ("mobile", "UA2")

# (seconds after T0, event_type, success, amount, bytes, country, ip, device, duration_ms)
U1 = [
    (0, "login", False, None, None, "US", "A", DESK, 99),
    (60, "login", False, None, None, "US", "A", DESK, None),
    (120, "login", True, None, None, "US", "B", DESK, None),
    (240, "purchase", None, 100.0, None, "US", "B", DESK, None),
    (1200, "purchase", None, 300.0, None, "DE", "C", PHONE, None),
    (7200, "login", True, None, None, "US", "A", DESK, None),
    (7230, "file_download", None, None, 1000, "US", "A", DESK, None),
    (7260, "api_call", None, None, 3000, "US", "A", DESK, None),
]

US_DE_KM = haversine_km(country_centres()["US"], country_centres()["DE"])

# Expected, by hand, per event in order.
EXPECTED = {
    "events_1m": [1, 2, 2, 1, 1, 1, 2, 3],
    "events_5m": [1, 2, 3, 4, 1, 1, 2, 3],
    # failed-login features are counted on logins only (u1-3 is a purchase)
    "failed_logins_10m": [1, 2, 2, 0, 0, 0, 0, 0],
    "distinct_ips_1h": [1, 1, 2, 2, 3, 1, 1, 1],
    "distinct_countries_24h": [1, 1, 1, 1, 2, 2, 2, 2],
    "seconds_since_prev": [604800, 60, 60, 120, 960, 6000, 30, 30],
    # u1's first place (u1-2, 120 s) is an hour old from u1-5 on: only then can a place be
    # new. IP A (failed logins only before) was not among the places of an hour before.
    # For u1-6..8, an hour back: 3 place events (u1-3..5) at 2 IPs (B, C): -ln(3 / 5).
    "country_novelty": [0] * 8,
    "device_novelty": [0] * 8,
    "ip_novelty": [0, 0, 0, 0, 0] + [math.log(5 / 3)] * 3,
    "hour_of_day": [0, 0, 0, 0, 0, 2, 2, 2],
    # prior mean hour is 0 until event 6; for event 7 it is the circular mean of {0 x5, 2}
    "amount_vs_user_mean": [0, 0, 0, 1.0, 3.0, 0, 0, 0],
    "amount_log": [0, 0, 0, math.log1p(100), math.log1p(300), 0, 0, 0],
    "bytes_log": [0, 0, 0, 0, 0, 0, math.log1p(1000), math.log1p(3000)],
    # the typical transfer is of transfers an hour old: none for either (see BURST)
    "bytes_vs_user_mean": [0, 0, 0, 0, 0, 0, 1.0, 1.0],
    "duration_ms_log": [math.log(100), 0, 0, 0, 0, 0, 0, 0],
    # US -> DE (a new country) in 960 s: km between the centres, per hour; back to the
    # known US counts nothing
    "travel_speed_kmh": [0, 0, 0, 0, US_DE_KM / (960 / 3600), 0, 0, 0],
    # the fastest jump of the last hour: u1-4's, and nothing within the hour before u1-5
    "travel_speed_max_1h": [0, 0, 0, 0, US_DE_KM / (960 / 3600), 0, 0, 0],
    "failed_login_ips_10m": [1, 1, 1, 0, 0, 0, 0, 0],
    # failed / (logins + 1): 1 / 2, 2 / 3, 2 / 4
    "failed_login_ratio_10m": [1 / 2, 2 / 3, 2 / 4, 0, 0, 0, 0, 0],
    "events_10s": [1] * 8,
    # the last minute's gaps between its events: never 3 (u1-7's minute holds 30, 30; the
    # 6000 s pause before it is not a gap of that minute)
    "gap_regularity_1m": [1] * 8,
    "is_automation_agent": [0] * 8,
    "bytes_1h_log": [0] * 6 + [math.log1p(1000), math.log1p(4000)],
    # no transfer an hour old to compare with (see BURST)
    "transfer_1h_vs_typical": [0] * 6 + [1.0, 1.0],
    # u1-5 logs in from a new IP; u1-6 downloads 30 s later (u1-7 is an API call)
    "value_after_risky_access": [0, 0, 0, 0, 0, 0, 1, 0],
    "items_log": [0] * 8,
    # earlier places (not failed logins) in this country: none before u1-3; then US, US;
    # DE is new at u1-4; back in the US, 2 of 3, 3 of 4, 4 of 5
    "country_share": [1, 1, 1, 1, 0, 2 / 3, 3 / 4, 4 / 5],
    # earlier places on this device: none before u1-3; the desk 1 of 1; the phone 0 of 2;
    # the desk again 2 of 3, 3 of 4, 4 of 5: -ln((on it + 1) / (places + 2))
    "device_rarity": [0, 0, 0]
    + [-math.log(a / b) for a, b in ((2, 3), (1, 4), (3, 5), (4, 6), (5, 7))],
}


def _circular_mean_hour(hours):
    s = sum(math.sin(h * 2 * math.pi / 24) for h in hours) / len(hours)
    c = sum(math.cos(h * 2 * math.pi / 24) for h in hours) / len(hours)
    return (math.atan2(s, c) * 24 / (2 * math.pi)) % 24


def _rows(user, events, offset0=0):
    rows = []
    for i, (sec, etype, success, amount, nbytes, country, ip, device, dur) in enumerate(
        events
    ):
        rows.append(
            (
                f"{user}-{i}",
                etype,
                T0 + timedelta(seconds=sec),
                user,
                "s1",
                ip,
                country,
                device[0],
                device[1],
                success,
                amount,
                None,
                nbytes,
                dur,
                None,
                "t",
                0,
                offset0 + i,
                "b1",
            )
        )
    return rows


SCHEMA = (
    "event_id string, event_type string, event_time timestamp, user_id string, "
    "session_id string, ip_address string, country string, device_type string, "
    "user_agent string, success boolean, amount double, items int, bytes_transferred long, "
    "duration_ms int, extra_fields string, topic string, partition int, offset long, "
    "batch_id string"
)


@pytest.fixture(scope="module")
def bronze_like(spark):
    # A second user, interleaved in time, must not leak into u1's windows.
    other = [
        (s + 1, "login", False, None, None, "FR", "Z", DESK, None) for s in (0, 30, 90)
    ]
    return spark.createDataFrame(_rows("u1", U1) + _rows("u2", other, 100), SCHEMA)


def _by_id(df):
    return {r["event_id"]: r for r in df.collect()}


def test_features_match_hand_computed_values(bronze_like):
    got = _by_id(silver_rows(bronze_like))
    assert [*EVENT_COLUMNS, "late", *FEATURE_COLUMNS] == [
        c for c in silver_rows(bronze_like).columns if c != "silver_processed_at"
    ]
    for name, values in EXPECTED.items():
        actual = [got[f"u1-{i}"][name] for i in range(len(U1))]
        assert actual == pytest.approx(values), name
    deviations = [got[f"u1-{i}"]["hour_deviation"] for i in range(len(U1))]
    assert deviations[:6] == pytest.approx([0, 0, 0, 0, 0, 2])
    assert deviations[6] == pytest.approx(2 - _circular_mean_hour([0] * 5 + [2]))
    assert [got[f"u2-{i}"]["failed_logins_10m"] for i in range(3)] == [1, 2, 3]


# A user settled in the US goes to France: the French login, device and IP stay new for an
# hour after their first use, then they are the user's places.
SETTLED = [
    (0, "login", True, None, None, "US", "A", DESK, None),
    (4000, "login", True, None, None, "FR", "Z", PHONE, None),
    (4030, "purchase", None, 50.0, None, "FR", "Z", PHONE, None),
    (8000, "page_view", None, None, None, "FR", "Z", PHONE, None),
]


def test_places_stay_new_for_an_hour(spark):
    rows = _by_id(silver_rows(spark.createDataFrame(_rows("u4", SETTLED), SCHEMA)))
    for name in ("country_novelty", "device_novelty", "ip_novelty"):
        assert [rows[f"u4-{i}"][name] > 0 for i in range(4)] == [0, 1, 1, 0], name
    # the purchase 30 s after a login from a new place
    assert [rows[f"u4-{i}"]["value_after_risky_access"] for i in range(4)] == [
        0,
        0,
        1,
        0,
    ]


# Transfers: one, then a burst over an hour later. The burst is measured against the
# transfers an hour old, not against its own earlier calls.
BURST = [
    (0, "api_call", None, None, 1000, "US", "A", DESK, None),
    (4000, "api_call", None, None, 3000, "US", "A", DESK, None),
    (4030, "api_call", None, None, 9000, "US", "A", DESK, None),
    (7700, "api_call", None, None, 1000, "US", "A", DESK, None),
]


def test_a_burst_of_transfers_does_not_raise_its_own_baseline(spark):
    rows = _by_id(silver_rows(spark.createDataFrame(_rows("u5", BURST), SCHEMA)))
    got = [
        (
            rows[f"u5-{i}"]["bytes_vs_user_mean"],
            rows[f"u5-{i}"]["transfer_1h_vs_typical"],
        )
        for i in range(4)
    ]
    # typical: none; then 1000 (the burst's 3000 is not an hour old at 4030 s); at 7700 s
    # the geometric mean of 1000, 3000 and 9000 (each an hour old), 3000 up to log1p's +1;
    # the hour before 7700 s holds only its own 1000
    typical = math.expm1((math.log1p(1000) + math.log1p(3000) + math.log1p(9000)) / 3)
    expected = [(1.0, 1.0), (3.0, 3.0), (9.0, 6.0), (1000 / typical, 1000 / typical)]
    assert [v for pair in got for v in pair] == pytest.approx(
        [v for pair in expected for v in pair], rel=1e-6
    )


# A jump to Russia and back home: the speed counts into the new country and stays with the
# events there; home is no jump, and the jump into Russia is not home's.
TRIP = [
    (0, "login", True, None, None, "US", "A", DESK, None),
    (600, "login", True, None, None, "RU", "R", DESK, None),
    (660, "page_view", None, None, None, "RU", "R", DESK, None),
    (900, "page_view", None, None, None, "US", "A", DESK, None),
]


def test_a_jump_counts_into_the_new_country_only(spark):
    rows = _by_id(silver_rows(spark.createDataFrame(_rows("u6", TRIP), SCHEMA)))
    jump = haversine_km(country_centres()["US"], country_centres()["RU"]) / (600 / 3600)
    speeds = [rows[f"u6-{i}"]["travel_speed_kmh"] for i in range(4)]
    highest = [rows[f"u6-{i}"]["travel_speed_max_1h"] for i in range(4)]
    assert speeds == pytest.approx([0, jump, 0, 0])
    assert highest == pytest.approx([0, jump, jump, 0])


def _minute_regularity(times: list[float]) -> list[float]:
    """gap_regularity_1m by its definition, per event: the gaps between consecutive events
    at most 60 s before it (its own second included)."""
    out = []
    for t in times:
        minute = sorted(u for u in times if t - 60 <= u <= t)
        gaps = [b - a for a, b in itertools.pairwise(minute)]
        mean = statistics.mean(gaps) if gaps else 0
        out.append(statistics.pstdev(gaps) / mean if len(gaps) >= 3 and mean > 0 else 1)
    return out


@settings(max_examples=10, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.integers(0, 3000).map(lambda ms: ms / 1000),  # a beat, ties included
                st.integers(5, 120),  # a person's pace
                st.integers(600, 86_400 * 3),  # a pause, a day, days
            ),
            min_size=1,
            max_size=25,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_gap_regularity_counts_only_the_gaps_within_the_minute(spark, users):
    """A pause before a burst is not a gap of the burst's minute: a steady beat after an
    hour's silence reads as steady."""
    rows, expected = [], {}
    for n, gaps in enumerate(users):
        times = list(itertools.accumulate(gaps))
        events = [
            (t, "page_view", None, None, None, "US", "A", DESK, 50) for t in times
        ]
        rows += _rows(f"r{n}", events, offset0=100 * n)
        expected |= {f"r{n}-{i}": v for i, v in enumerate(_minute_regularity(times))}
    got = _by_id(silver_rows(spark.createDataFrame(rows, SCHEMA)))
    assert {k: got[k]["gap_regularity_1m"] for k in expected} == pytest.approx(
        expected, rel=1e-6, abs=1e-5
    )


def test_a_steady_beat_after_a_pause_reads_as_steady(spark):
    beat = [(t, "page_view", None, None, None, "US", "A", DESK, 50) for t in (0, 3600)]
    beat += [
        (3600 + 2 * i, "search", None, None, None, "US", "A", DESK, 50)
        for i in range(1, 6)
    ]
    rows = _by_id(silver_rows(spark.createDataFrame(_rows("u9", beat), SCHEMA)))
    # from the fourth beat on, the minute holds three or more 2 s gaps and nothing else
    assert [rows[f"u9-{i}"]["gap_regularity_1m"] for i in range(7)] == pytest.approx(
        [1, 1, 1, 1, 0, 0, 0]
    )


def test_profile_plus_recent_rows_give_the_whole_history_features(bronze_like):
    """Split at a watermark: rows before it folded into profiles, the rest featurized from
    the profile plus the stored rows (as silver reads them: the 24 hours the windows need,
    whose rows before the watermark count in windows only); every value equals the
    all-at-once one."""
    from datetime import UTC, datetime

    from anomaly_assets.silver.features import featurize
    from anomaly_assets.silver.profile import fold

    whole = _by_id(silver_rows(bronze_like))
    first_ids = [f"u1-{i}" for i in range(5)] + ["u2-0", "u2-1", "u2-2"]
    first = bronze_like.filter(bronze_like.event_id.isin(first_ids))
    rest = bronze_like.filter(~bronze_like.event_id.isin(first_ids))
    earlier = silver_rows(first).localCheckpoint()
    watermark = datetime(
        2026, 11, 1, 0, 10, tzinfo=UTC
    )  # after u1-3 (240 s), before u1-4
    profile = fold(None, earlier.filter(earlier.event_time < watermark), watermark)
    context = earlier
    later = _by_id(featurize(rest, context, profile.localCheckpoint(), watermark))
    assert set(later) == set(whole) - set(first_ids)
    for event_id, row in later.items():
        for name in FEATURE_COLUMNS:
            assert row[name] == pytest.approx(whole[event_id][name]), (event_id, name)
        assert not row["late"]
    # A profile written before last_country_time and the log sums existed gives the same
    # features here: its last event was a place, one purchase and no transfers.
    legacy = profile.drop(
        "last_country_time", "bytes_log_e9", "amount_log_e9"
    ).localCheckpoint()
    upgraded = _by_id(featurize(rest, context, legacy, watermark))
    for event_id, row in upgraded.items():
        for name in FEATURE_COLUMNS:
            assert row[name] == pytest.approx(whole[event_id][name]), (event_id, name)


def test_an_earlier_event_corrects_the_rows_after_it(bronze_like):
    """u1-1 arrives after u1-2 .. u1-7: it is placed exactly and the later rows it changes
    (window counts, seconds since previous) are returned corrected."""
    from anomaly_assets.silver.features import featurize

    whole = _by_id(silver_rows(bronze_like))
    without = bronze_like.filter("event_id != 'u1-1'")
    earlier = silver_rows(without).localCheckpoint()
    late = bronze_like.filter("event_id = 'u1-1'")
    out = _by_id(featurize(late, earlier, None, None))
    assert "u1-1" in out and "u2-0" not in out, "only u1's rows are touched"
    assert out["u1-2"]["events_1m"] == whole["u1-2"]["events_1m"] == 2
    assert earlier.filter("event_id = 'u1-2'").first()["events_1m"] == 1
    for event_id, row in out.items():
        for name in FEATURE_COLUMNS:
            assert row[name] == pytest.approx(whole[event_id][name]), (event_id, name)


def test_duplicates_within_a_batch_and_redeliveries(bronze_like):
    from anomaly_assets.core.pruning import event_spans
    from anomaly_assets.silver.step import drop_delivered

    dup = bronze_like.filter("event_id = 'u1-3'").withColumn(
        "offset", bronze_like["offset"] + 50
    )
    rows = _by_id(silver_rows(bronze_like.unionByName(dup)))
    assert len(rows) == 11 and rows["u1-3"]["offset"] == 3
    stored = silver_rows(bronze_like).localCheckpoint()
    redelivered = dup.withColumn("batch_id", dup.batch_id.substr(0, 0))
    assert drop_delivered(redelivered, stored, event_spans(dup), [""]).count() == 0
    # ...but a retry of the batch that stored it keeps it (its own earlier attempt)
    assert drop_delivered(dup, stored, event_spans(dup), ["b1"]).count() == 1


@pytest.mark.parametrize(
    "agent, automated",
    [
        ("python-requests/2.32.3", True),
        ("curl/8.8.0", True),
        ("Go-http-client/1.1", True),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/126.0 Safari/537.36", True),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            True,
        ),
        ("Scrapy/2.11 (+https://scrapy.org)", True),
        ("okhttp/4.12.0", True),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36", False),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile", False),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
            False,
        ),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/126.0 Mobile", False),
    ],
)
def test_automation_agents_are_told_from_browsers(spark, agent, automated):
    from pyspark.sql import functions as F

    from anomaly_assets.silver.catalogue.bots import AUTOMATION_AGENTS

    row = spark.createDataFrame([(agent,)], "ua string").select(
        F.col("ua").rlike(AUTOMATION_AGENTS).alias("hit")
    )
    assert row.first()["hit"] is automated


def test_every_feature_names_the_bronze_columns_it_comes_from():
    """The silver column lineage is built from FEATURE_INPUTS: a feature missing from it, or
    naming a column bronze does not have, would show a wrong lineage in the UI."""
    from anomaly_assets.ingestion.bronze import BRONZE_COLUMNS
    from anomaly_assets.silver.assets import lineage as silver_lineage
    from anomaly_assets.silver.features import FEATURE_INPUTS, FEATURES
    from anomaly_assets.stream import DEFAULT_STREAM

    assert list(FEATURE_INPUTS) == list(FEATURES)
    meta = silver_lineage(DEFAULT_STREAM)["dagster/column_lineage"]
    lineage = meta.value.deps_by_column
    for feature, inputs in FEATURE_INPUTS.items():
        sources = {d.column_name for d in lineage[feature]}
        assert sources == {"user_id", "event_ts", *inputs} <= set(BRONZE_COLUMNS)


def test_a_legacy_profile_folds_its_transfers_as_transfers_of_their_mean(spark):
    """Profiles written before bytes_log_e9 get it at their next fold: their history counts
    as that many transfers of its mean, the new transfers as themselves."""
    from anomaly_assets.silver.profile import HOUR_SCALE, fold

    moves = [
        (60 * i, "file_download", None, None, size, "US", "A", DESK, None)
        for i, size in enumerate((1000, 3000, 500))
    ]
    rows = silver_rows(spark.createDataFrame(_rows("u5", moves), SCHEMA))
    old = fold(None, rows.filter("offset < 2"), T0).drop("bytes_log_e9")
    new = fold(old, rows.filter("offset = 2"), T0).first()
    history = 2 * math.log1p(4000 / 2)
    assert new["transfers"] == 3
    assert new["bytes_log_e9"] / HOUR_SCALE == pytest.approx(
        history + math.log1p(500), abs=1e-6
    )
