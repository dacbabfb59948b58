"""Per-row attribution of the anomaly score to features: sampled Shapley values.

Method: permutation-sampling Shapley values (Strumbelj & Kononenko, 2014) of the model's
anomaly score, against a baseline row of the training medians. For each of ``n_permutations``
random feature orders, features are switched from the baseline to the row's value one at a
time and each is credited with the score change it causes; credits are averaged. The
contributions of a row therefore add up exactly to s(x) - s(baseline).

Why this and not SHAP's TreeExplainer or DIFFI: ``shap`` is not in the stack, and DIFFI's
per-tree path weighting favours features the forest splits on often, whatever the row.
Shapley sampling needs only the model's own ``score_samples``, handles features that act
together (a credential-stuffing burst raises several at once) by sharing the credit, and is
deterministic for a seed. Its cost, ``n_permutations * (n_features + 1)`` scorings per row,
is paid for anomalous rows only.
"""

import numpy as np


def shapley_contributions(
    score_fn,
    X: np.ndarray,
    baseline: np.ndarray,
    n_permutations: int = 8,
    seed: int = 0,
    chunk_rows: int = 2000,
) -> np.ndarray:
    """Contribution of every feature to ``score_fn`` for every row of ``X`` (n x d)."""
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    out = np.zeros((n, d))
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    # Antithetic pairs (an order and its reverse) cut the variance for free.
    half = [rng.permutation(d) for _ in range((n_permutations + 1) // 2)]
    perms = [p for q in half for p in (q, q[::-1])][:n_permutations]
    for lo in range(0, n, chunk_rows):
        rows = X[lo : lo + chunk_rows]
        m = len(rows)
        # One big scoring call per chunk: for each permutation, d + 1 stacked states.
        states = np.empty((len(perms), d + 1, m, d))
        for k, perm in enumerate(perms):
            current = np.broadcast_to(baseline, (m, d)).copy()
            states[k, 0] = current
            for step, f in enumerate(perm, start=1):
                current[:, f] = rows[:, f]
                states[k, step] = current
        scores = np.asarray(score_fn(states.reshape(-1, d))).reshape(
            len(perms), d + 1, m
        )
        deltas = np.diff(scores, axis=1)  # (perms, d, m): gain of the step's feature
        for k, perm in enumerate(perms):
            out[lo : lo + m, perm] += deltas[k].T
    return out / len(perms)


def top_features(
    contributions: np.ndarray, names: list[str], k: int = 3
) -> list[list[str]]:
    """The ``k`` features pushing each row most towards anomalous (positive credit only)."""
    order = np.argsort(-contributions, axis=1)[:, :k]
    return [
        [names[j] for j in row if contributions[i, j] > 0]
        for i, row in enumerate(order)
    ]
