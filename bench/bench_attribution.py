"""Attribution methods for the forest, side by side: accuracy, agreement with SHAP, cost.

Rows with one injected feature: normal rows of 28 features (as many as the product's model),
independent or correlated (pairwise 0.8, and a second case of near twins at 0.99), with one
feature pushed 5-8 standard deviations out. The forest is the product's (log1p + robust
scaling, 200 trees of 2,048 samples). For each method: top-1 accuracy (the injected feature
comes first), agreement with SHAP's path-dependent TreeExplainer (top-1 and top-3 overlap),
milliseconds per anomaly and the one-time set-up per model.

- TreeSHAP, interventional against the training medians: what gold stores.
- TreeSHAP, path-dependent: SHAP's default for trees, the reference for agreement.
- Permutation-sampling Shapley (8 and 64 antithetic orders against the medians): what gold
  stored before, model-agnostic.

``python bench/bench_attribution.py [--anomalies 500]``
"""

import argparse
import time

import numpy as np
import shap

from anomaly_assets.gold.contributions import ForestExplainer
from anomaly_assets.model.forests import anomaly_scores, build_pipeline

FEATURES = 28


def permutation_shapley(score_fn, X, reference, n_orders, seed=0):
    """Strumbelj & Kononenko's sampling: per order, switch features from the reference to
    the row one at a time and credit each with the score change it causes."""
    n, d = X.shape
    rng = np.random.default_rng(seed)
    half = [rng.permutation(d) for _ in range((n_orders + 1) // 2)]
    orders = [p for q in half for p in (q, q[::-1])][:n_orders]
    states = np.empty((len(orders), d + 1, n, d))
    for k, order in enumerate(orders):
        current = np.broadcast_to(reference, (n, d)).copy()
        states[k, 0] = current
        for step, f in enumerate(order, start=1):
            current[:, f] = X[:, f]
            states[k, step] = current
    scores = score_fn(states.reshape(-1, d)).reshape(len(orders), d + 1, n)
    out = np.zeros((n, d))
    for k, order in enumerate(orders):
        out[:, order] += np.diff(scores[k], axis=0).T
    return out / len(orders)


def case(rng, rho, n_train, n_anomalies):
    cov = np.full((FEATURES, FEATURES), rho)
    np.fill_diagonal(cov, 1.0)
    X = rng.multivariate_normal(np.zeros(FEATURES), cov, size=n_train)
    A = rng.multivariate_normal(np.zeros(FEATURES), cov, size=n_anomalies)
    injected = rng.integers(0, FEATURES, n_anomalies)
    A[np.arange(n_anomalies), injected] += rng.choice(
        [-1, 1], n_anomalies
    ) * rng.uniform(5, 8, n_anomalies)
    return X, A, injected


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def attribute(model, reference, A) -> dict:
    """method -> (contributions, seconds for all rows, one-time set-up seconds)."""
    product = ForestExplainer(model, reference)
    _, product_setup = timed(lambda: product.contributions(A[:1]))
    path_dep, path_setup = timed(lambda: shap.TreeExplainer(model[-1]))
    Z = model[:-1].transform(A)
    results = {
        "TreeSHAP interventional vs medians (gold)": (
            *timed(lambda: product.contributions(A)),
            product_setup,
        ),
        "TreeSHAP path-dependent (SHAP default)": (
            *timed(lambda: -path_dep.shap_values(Z, check_additivity=False)),
            path_setup,
        ),
    }
    for orders in (8, 64):
        results[f"permutation Shapley, {orders} orders"] = (
            *timed(
                lambda o=orders: permutation_shapley(
                    lambda S: anomaly_scores(model, S), A, reference, o
                )
            ),
            0.0,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--anomalies", type=int, default=500)
    parser.add_argument("--train", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"== Attribution on rows with one injected feature ({FEATURES} features, "
        f"{args.anomalies} anomalies, forest of 200 trees x 2,048 samples) =="
    )
    header = (
        f"{'method':<44}{'top-1':>7}{'= SHAP top-1':>14}{'top-3 overlap':>15}"
        f"{'ms/anomaly':>12}{'set-up s':>10}"
    )
    for label, rho in [
        ("independent", 0.0),
        ("correlated 0.8", 0.8),
        ("twins 0.99", 0.99),
    ]:
        X, A, injected = case(rng, rho, args.train, args.anomalies)
        model = build_pipeline(200, 2048, 0).fit(X)
        reference = np.median(X, axis=0)
        results = attribute(model, reference, A)
        shap_ref = results["TreeSHAP path-dependent (SHAP default)"][0]
        shap_top3 = np.argsort(-shap_ref, axis=1)[:, :3]
        print(f"\n-- {label} --\n{header}")
        for name, (contrib, seconds, setup) in results.items():
            top3 = np.argsort(-contrib, axis=1)[:, :3]
            overlap = np.mean(
                [len(set(a) & set(b)) / 3 for a, b in zip(top3, shap_top3)]
            )
            print(
                f"{name:<44}{(contrib.argmax(1) == injected).mean():>7.3f}"
                f"{(contrib.argmax(1) == shap_ref.argmax(1)).mean():>14.3f}"
                f"{overlap:>15.3f}{1000 * seconds / len(A):>12.3f}{setup:>10.2f}"
            )
        gold = results["TreeSHAP interventional vs medians (gold)"][0]
        total = anomaly_scores(model, A) - anomaly_scores(model, reference[None, :])
        print(
            "gold's contributions add up to s(x) - s(medians) within "
            f"{np.abs(gold.sum(1) - total).max():.1e}; target top-1 >= 0.95: "
            + ("met" if (gold.argmax(1) == injected).mean() >= 0.95 else "NOT met")
        )


if __name__ == "__main__":
    main()
