"""Counting the Spark actions of a step, on a real session."""

from anomaly_assets.lib import delta_sql, spark_actions


def test_each_action_counts_once_by_kind_and_by_the_line_that_asked(spark, tmp_path):
    spark_actions.install()
    spark_actions.install()  # idempotent: nothing wrapped twice
    assert spark_actions.in_step() is None
    path = str(tmp_path / "t")
    with spark_actions.step():
        df = spark.range(10)
        df.first()  # first -> head -> take -> collect: one action
        df.filter("id > 3").count()
        df.write.format("delta").save(path)
        delta_sql.version(spark, path)  # DESCRIBE HISTORY, then its rows collected
        lazy = df.select("id").where("id < 2")  # no action: nothing counted
        taken = spark_actions.in_step()
    del lazy
    assert spark_actions.by_kind(taken) == {
        "first": 1,
        "count": 1,
        "save": 1,
        "sql DESCRIBE HISTORY": 1,
        "collect": 1,
    }
    assert spark_actions.total(taken) == 5
    sites = spark_actions.by_site(taken)
    assert set(sites.values()) == {1}, sites
    assert any(
        s.startswith("lib/test_spark_actions.py:") and "first" in s for s in sites
    ), sites
    assert any(
        s.startswith("delta_sql.history < lib/test_spark_actions.py:") for s in sites
    )
    assert spark_actions.in_step() is None
