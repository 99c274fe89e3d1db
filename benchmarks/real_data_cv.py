"""Held-out log-likelihood on scikit-learn's bundled real data sets, by 5-fold CV.

For iris, wine, breast_cancer and digits (features constant over the whole data set
dropped: 3 pixels of digits), each fold fits on four fifths and scores the fifth, in the
units of X (mean log-likelihood per held-out sample, nats; higher is better):

* ``GaussianMixture`` for each covariance type (full, diag, spherical, tied), the number
  of components chosen by BIC over 1..10 on the training fold;
* ``BayesianGaussianMixture(n_components=10)`` for each covariance type;
* ``OverparamGMM`` with its default settings, and each covariance type.

"best sklearn" is the best of the scikit-learn models on each data set (chosen after the
fact on the held-out folds: a strict reference). Target of issue 9: the default within
0.02 nats/sample of it on every data set.

    python benchmarks/real_data_cv.py [--data iris wine] [--out results/real_data_cv.csv]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.model_selection import KFold

from overgmm.estimator import OverparamGMM

LOADERS = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
}
SK_TYPES = ("full", "diag", "spherical", "tied")
OURS_TYPES = ("full", "diag", "spherical")


def load(name):
    X = LOADERS[name]().data.astype(np.float64)
    return X[:, X.std(0) > 0]


def bic_search(Xtr, cov, k_max=10):
    best, best_bic = None, np.inf
    for k in range(1, k_max + 1):
        g = GaussianMixture(k, covariance_type=cov, random_state=0).fit(Xtr)
        b = g.bic(Xtr)
        if b < best_bic:
            best, best_bic = g, b
    return best


def models():
    out = {}
    for cov in SK_TYPES:
        out[f"GMM {cov} + BIC"] = lambda X, cov=cov: bic_search(X, cov)
    for cov in SK_TYPES:
        out[f"BGMM {cov}"] = lambda X, cov=cov: BayesianGaussianMixture(
            n_components=10, covariance_type=cov, random_state=0, max_iter=500
        ).fit(X)
    out["ours default"] = lambda X: OverparamGMM(random_state=0).fit(X)
    for cov in OURS_TYPES:
        out[f"ours {cov}"] = lambda X, cov=cov: OverparamGMM(covariance_type=cov, random_state=0).fit(X)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(LOADERS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    rows = []
    for name in args.data:
        X = load(name)
        folds = KFold(5, shuffle=True, random_state=0).split(X)
        for f, (tr, te) in enumerate(folds):
            for model, fit in models().items():
                t0 = time.perf_counter()
                try:
                    g = fit(X[tr])
                    score = float(g.score(X[te]))
                    k = int(getattr(g, "n_components_", getattr(g, "n_components", 0)))
                    if model.startswith("BGMM"):
                        k = int(np.sum(g.weights_ > 0.01))
                except Exception as err:  # a model that fails counts as -inf, and says why
                    score, k = -np.inf, 0
                    print(f"  {name} fold {f} {model}: {type(err).__name__}: {err}")
                rows.append(dict(data=name, fold=f, model=model, score=score, k=k, seconds=time.perf_counter() - t0))
        df = pd.DataFrame([r for r in rows if r["data"] == name])
        mean = df.groupby("model")["score"].mean()
        print(f"{name}: " + ", ".join(f"{m} {v:.3f}" for m, v in mean.sort_values(ascending=False).items()), flush=True)
    df = pd.DataFrame(rows)
    table = df.groupby(["data", "model"]).agg(score=("score", "mean"), k=("k", "median"), seconds=("seconds", "median"))
    table = table.reset_index()
    sk = table[~table.model.str.startswith("ours")]
    best = sk.loc[sk.groupby("data")["score"].idxmax()].set_index("data")
    print("\nmean held-out log-likelihood per sample (nats, units of X), 5-fold CV")
    print(
        f"{'data':14} {'best sklearn':>28} {'score':>10} "
        + " ".join(f"{m:>14}" for m in ["ours default", *[f"ours {c}" for c in OURS_TYPES]])
    )
    for name in args.data:
        b = best.loc[name]
        ours = table[(table.data == name)].set_index("model")["score"]
        diffs = " ".join(f"{ours[m] - b.score:+14.3f}" for m in ["ours default", *[f"ours {c}" for c in OURS_TYPES]])
        print(f"{name:14} {b.model:>28} {b.score:10.3f} {diffs}")
    print("(ours columns: difference to the best scikit-learn model; target >= -0.02)")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        df.to_csv(args.out + ".tmp", index=False)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
