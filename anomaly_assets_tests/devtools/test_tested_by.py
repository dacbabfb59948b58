"""docs/tests.md says where each module is tested, from the tests' own imports."""

from pathlib import Path

from anomaly_assets.devtools.tested_by import index, render

PAGE = Path(__file__).parents[2] / "docs" / "tests.md"


def test_the_page_is_current():
    assert PAGE.read_text() == render(), (
        "docs/tests.md is stale: python -m anomaly_assets.devtools.tested_by "
        "> docs/tests.md"
    )


def test_a_module_leads_with_its_namesake_and_reaches_its_tests_in_one_hop():
    found = index()
    assert found["anomaly_assets.silver.features"][0][0] == "silver/test_features.py"
    # a package's namesake sits in its own folder
    catalogue, via = found["anomaly_assets.silver.catalogue"]
    assert catalogue[0] == "silver/catalogue/test_catalogue.py" and via is None
    # a module no test imports: the tests of the module of its folder that uses it
    travel, via = found["anomaly_assets.silver.catalogue.travel"]
    assert via == "through `anomaly_assets.silver.catalogue`"
    assert travel[0] == "silver/catalogue/test_catalogue.py"
    untested = [m for m, (tests, _) in found.items() if not tests]
    assert len(untested) <= 2, untested
