"""A detection floor per anomaly type, on three event mixes, through Spark's real feature path.

For each mix: a training stream (1 % anomalies) and a held-out continuation of the same users
with a seed never trained on (3 % anomalies, for enough of each type), validated and
featurised as bronze and silver do it, in one pass so every event has its history. The
product's model (the threat forests) is fitted on the training stream and scores the
held-out one. The floors sit below what ``bench/bench_detection.py`` measures on larger
streams and under the lowest of forest seeds 0-2, yet a lost feature, a broken window or a threat forest
gone drops a type below its floor.
"""

import numpy as np
import pandas as pd
import pytest

from anomaly_assets.devtools.campaigns import CampaignScenario
from anomaly_assets.devtools.generator import EventGenerator
from anomaly_assets.devtools.labelled_features import (
    generated,
    labelled_features,
    split_at,
)
from anomaly_assets.devtools.scenario import CommuterScenario
from anomaly_assets.model.forests import (
    ThreatForests,
    anomaly_scores,
    detection_quality,
)
from anomaly_assets.silver.features import FEATURE_COLUMNS

TRAIN_EVENTS, HELD_EVENTS = 30_000, 30_000

# type: (ROC AUC floor, recall at 1 % FPR floor). Measured here with the product's model
# (threat forests, seed 42) when last set, AUC / recall: generator ATO 0.999 / 0.986, bot
# 0.998 / 0.966, stuffing 1.000 / 1.000, exfiltration 1.000 / 1.000, high-value 0.999 /
# 1.000, travel 0.999 / 0.979; commuters ATO 0.938 / 0.549, bot 0.998 / 0.965, stuffing
# 1.000 / 1.000, exfiltration 0.858 / 0.143, high-value 0.996 / 0.922, travel 1.000 /
# 1.000. Over seeds 0-2 the lowest recalls were generator bot 0.947, ATO 0.971;
# commuters exfiltration 0.130, ATO 0.535, bot 0.936, high-value 0.922, travel 0.999.
# Commuters' exfiltration is low here (0.965 in bench_detection): two of its four victims
# have no transfer an hour old during most of theirs (median bytes_vs_user_mean 1.0), so
# there is no baseline to stand out from. The forest over every feature alone (the model before the
# threat forests) measured commuters bot 0.532 and exfiltration 0.099 here.
FLOORS = {
    EventGenerator: {
        "account_takeover": (0.97, 0.85),
        "bot_activity": (0.97, 0.85),
        "credential_stuffing": (0.97, 0.95),
        "data_exfiltration": (0.97, 0.85),
        "high_value_purchase": (0.97, 0.70),
        "impossible_travel": (0.97, 0.85),
    },
    CommuterScenario: {
        "account_takeover": (0.90, 0.45),
        "bot_activity": (0.97, 0.85),
        "credential_stuffing": (0.97, 0.90),
        "data_exfiltration": (0.82, 0.10),
        "high_value_purchase": (0.97, 0.85),
        "impossible_travel": (0.97, 0.90),
    },
    # The third mix (devtools/campaigns.py), trained on a clean window: seeds 42, 0-2
    # measured ATO 0.937-0.945 / 0.333-0.400, bot 0.980-0.983 / 0.589-0.638, stuffing
    # 0.995-0.996 / 0.914-0.918, exfiltration 0.958-0.968 / 0.455-0.519, high-value
    # 0.999-1.000 / 1.000, travel 0.997-0.998 / 1.000. Low on purpose: half the bot farm
    # hides behind a browser's agent while the batch exports script theirs, the stuffing
    # comes from the victims' own countries a few tries each, and the insiders export what
    # analysts export, only more; what the analysts' labels add is for the label stage.
    CampaignScenario: {
        "account_takeover": (0.88, 0.25),
        "bot_activity": (0.95, 0.45),
        "credential_stuffing": (0.97, 0.80),
        "data_exfiltration": (0.92, 0.35),
        "high_value_purchase": (0.97, 0.90),
        "impossible_travel": (0.97, 0.90),
    },
}


def stream_features(spark, generator_class) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, held-out rows): features and the label of each event (None if normal)."""
    train_messages, train = generated(generator_class, TRAIN_EVENTS, 5, 0.01)
    held_messages, _ = generated(generator_class, HELD_EVENTS, 2026, 0.03, train.clock)
    rows = labelled_features(spark, train_messages + held_messages)
    return split_at(rows, train.clock)


@pytest.mark.parametrize("generator_class", list(FLOORS), ids=lambda c: c.__name__)
def test_every_type_stays_above_its_floor(spark, generator_class):
    train, held = stream_features(spark, generator_class)
    assert len(train) >= TRAIN_EVENTS * 0.99 and len(held) >= HELD_EVENTS * 0.99
    model = ThreatForests(200, 2048, 42, FEATURE_COLUMNS).fit(
        train[list(FEATURE_COLUMNS)].to_numpy(float)
    )
    scores = anomaly_scores(model, held[list(FEATURE_COLUMNS)].to_numpy(float))
    threshold = np.quantile(anomaly_scores(model, train[list(FEATURE_COLUMNS)]), 0.99)
    quality = detection_quality(scores, scores >= threshold, held["label"])
    measured = {
        kind: (round(q["roc_auc"], 3), round(q["recall_at_1pct_fpr"], 3), q["count"])
        for kind, q in quality.per_type.items()
    }
    print(f"{generator_class.__name__}: {measured}")  # shown with -s / on failure
    assert set(measured) == set(FLOORS[generator_class])
    low = {
        kind: (measured[kind], floor)
        for kind, floor in FLOORS[generator_class].items()
        if measured[kind][0] < floor[0] or measured[kind][1] < floor[1]
    }
    assert not low, f"types below their floor (measured, floor): {low}"
