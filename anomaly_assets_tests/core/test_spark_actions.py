"""Counting the Spark actions of a step, on a real session."""

from types import SimpleNamespace

from anomaly_assets.core import delta_sql, spark_actions


def _step_context(run_id: str, step_key: str, logged: list):
    """What step() reads of an asset's context: the run, the step and its log."""
    step = SimpleNamespace(step=SimpleNamespace(key=step_key))
    return SimpleNamespace(
        run_id=run_id,
        get_step_execution_context=lambda: step,
        log=SimpleNamespace(info=logged.append),
    )


def test_each_action_counts_once_by_kind_and_by_the_line_that_asked(spark, tmp_path):
    spark_actions.install()
    spark_actions.install()  # idempotent: nothing wrapped twice
    assert spark_actions.in_step("r1", "silver") is None
    path, logged = str(tmp_path / "t"), []
    with spark_actions.step(_step_context("r1", "silver", logged)):
        df = spark.range(10)
        df.first()  # first -> head -> take -> collect: one action
        df.filter("id > 3").count()
        df.write.format("delta").save(path)
        delta_sql.version(spark, path)  # DESCRIBE HISTORY, then its rows collected
        lazy = df.select("id").where("id < 2")  # no action: nothing counted
        taken = spark_actions.in_step("r1", "silver")
        assert spark_actions.in_step("r1", "gold") is None  # another step's are its own
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
        s.startswith("core/test_spark_actions.py:") and "first" in s for s in sites
    ), sites
    assert any(
        s.startswith("delta_sql.history < core/test_spark_actions.py:") for s in sites
    )
    assert spark_actions.in_step("r1", "silver") is None
    (line,) = logged
    assert line.startswith("Spark actions in this step: 5 ")


def test_an_abandoned_step_leaks_into_no_other(spark):
    """A failed asset's generator is closed later, elsewhere: its count stays its own and
    it logs nothing."""
    logged = []

    def asset_body():
        with spark_actions.step(_step_context("r2", "gold", logged)):
            yield spark.range(3).count()
            yield "never reached"

    body = asset_body()
    next(body)
    assert spark_actions.total(spark_actions.in_step("r2", "gold")) == 1
    assert spark_actions.in_step("r2", "silver") is None
    body.close()  # as the garbage collector would
    assert spark_actions.in_step("r2", "gold") is None and logged == []
