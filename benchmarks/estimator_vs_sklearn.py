"""OverparamGMM against scikit-learn's GaussianMixture (BIC search over 1..15 components,
spherical, diag and full, timed including the search) and BayesianGaussianMixture (Dirichlet-
process prior, 15 components), on real data sets and synthetic well-separated mixtures.

Run by hand (from the repository root):

    nice -n 10 .venv/bin/python benchmarks/estimator_vs_sklearn.py            # full run
    .venv/bin/python benchmarks/estimator_vs_sklearn.py --quick               # a smoke run
    .venv/bin/python benchmarks/estimator_vs_sklearn.py --tune                # settings search (tuning seeds)

Writes benchmarks/results/estimator_vs_sklearn_real.csv and ..._synthetic.csv (one row per
data set and model) and benchmarks/results/estimator_vs_sklearn.md (the summary tables
printed at the end, built from both tables).

Protocol:
* real data (iris, wine, breast_cancer, digits): one fixed split (70/30, random_state=0),
  standardized with the training mean and standard deviation; features constant on the
  training split are dropped (digits: 3 pixels), since every model would give them a
  variance at its floor and a held-out log-likelihood of minus a huge number.
* synthetic: m components in d dimensions, spherical with standard deviations in [0.5, 1],
  weights proportional to U(1, 2), means uniform in a box and at least 3 (s_i + s_j) apart
  (rejection sampling); 150 m training and 50 m test points; standardized like the real data.
* held-out score: mean log-likelihood per test sample (standardized units; higher is better).
* components found: GaussianMixture's BIC choice; BayesianGaussianMixture's components of
  weight above 0.01 (the estimator's default prune threshold); OverparamGMM's n_components_.
* wall time: the whole search for GaussianMixture (15 fits), one fit otherwise. For
  OverparamGMM the time excludes JAX compilation (a warm-up fit of the same shape first;
  compiled code is cached per shape); the compile time is reported separately.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.model_selection import GridSearchCV, train_test_split

from overgmm.estimator import OverparamGMM

RESULTS = Path(__file__).parent / "results"
SK_TYPES = ("spherical", "diag", "full")
BGMM_THRESHOLD = 0.01
K_MAX = 15

# OverparamGMM settings compared; "default" is what a user gets first. "best" was chosen by
# `--tune` on seeds 100-104 (not the reported seeds 0-19): merge_tol in {0.5, 1, 2} x n_init
# in {1, 4}; merge_tol 1 and 2 recovered m in 30/30 tuning data sets with either n_init,
# n_init=4 had the higher held-out likelihood (see docs/estimator.md).
OURS = {
    "ours default (diag)": {},
    "ours spherical": {"covariance_type": "spherical"},
    "ours best": {"n_init": 4},
}
OURS_REAL_EXTRA = {
    "ours diag merge_tol=0": {"merge_tol": 0.0},
    "ours diag polyak": {"algorithm": "polyak"},
    "ours diag gradient_em": {"algorithm": "gradient_em"},
    # settings chosen by 3-fold cross-validation of the held-out likelihood on the training
    # split only (GridSearchCV), timed including the search like the BIC search
    "ours CV-selected": "cv",
}
HARD_OURS = {"ours default": {}, "ours full": {"covariance_type": "full"}, "ours diag": {"covariance_type": "diag"}}
CV_GRID = {"covariance_type": ["diag", "spherical"], "var_floor": [1e-3, 1e-2, 3e-2]}


def standardize(Xtr, Xte):
    keep = Xtr.std(0) > 0
    Xtr, Xte = Xtr[:, keep], Xte[:, keep]
    mu, sd = Xtr.mean(0), Xtr.std(0)
    return (Xtr - mu) / sd, (Xte - mu) / sd


def real_datasets():
    for name, loader in [
        ("iris", datasets.load_iris),
        ("wine", datasets.load_wine),
        ("breast_cancer", datasets.load_breast_cancer),
        ("digits", datasets.load_digits),
    ]:
        X = loader().data.astype(float)
        Xtr, Xte = train_test_split(X, test_size=0.3, random_state=0)
        yield name, *standardize(Xtr, Xte)


def synthetic(d: int, m: int, seed: int):
    """A well-separated spherical mixture: (Xtr, Xte) standardized, and m."""
    rng = np.random.default_rng([d, m, seed])
    sd = rng.uniform(0.5, 1.0, size=m)
    w = rng.uniform(1.0, 2.0, size=m)
    w /= w.sum()
    box = 4.0 * m ** (1 / d) * 2
    while True:
        for _ in range(200):
            mu = rng.uniform(0, box, size=(m, d))
            dist = np.linalg.norm(mu[:, None] - mu[None], axis=-1)
            need = 3.0 * (sd[:, None] + sd[None])
            if np.all((dist >= need) | np.eye(m, dtype=bool)):
                break
        else:
            box *= 1.2
            continue
        break

    def draw(n):
        comp = rng.choice(m, size=n, p=w)
        return mu[comp] + sd[comp, None] * rng.normal(size=(n, d))

    return standardize(draw(150 * m), draw(50 * m))


def hard_synthetic(kind: str, d: int, m: int, seed: int):
    """Harder mixtures, where a prior or a BIC search may lose a component: ``small`` (one
    component holds 3% of the mass), ``close`` (two components whose means are only
    2.5 standard deviations apart, the rest well separated) or ``sheared`` (every component
    anisotropic: standard deviation 1.4 along a random direction, 0.25 across it, means
    at least 6 apart). Returns (Xtr, Xte)."""
    rng = np.random.default_rng([d, m, seed, {"small": 7, "close": 11, "sheared": 13}[kind]])
    sd = np.full(m, 0.7)
    w = np.full(m, 1.0 / m)
    if kind == "small":
        w = np.full(m, 0.97 / (m - 1))
        w[0] = 0.03
    mu = np.zeros((m, d))
    for j in range(1, m):
        while True:
            cand = rng.uniform(-4.0 * m ** (1 / d), 4.0 * m ** (1 / d), size=d) * 2
            if np.all(np.linalg.norm(mu[:j] - cand, axis=1) >= 6 * 0.7):
                mu[j] = cand
                break
    if kind == "close":
        direction = rng.normal(size=d)
        mu[1] = mu[0] + 2.5 * 0.7 * direction / np.linalg.norm(direction)

    shear = None
    if kind == "sheared":
        shear = []
        for _ in range(m):
            q, _ = np.linalg.qr(rng.normal(size=(d, d)))
            shear.append(q @ np.diag([1.4] + [0.25] * (d - 1)))
        shear = np.stack(shear)

    def draw(n):
        comp = rng.choice(m, size=n, p=w)
        z = rng.normal(size=(n, d))
        if shear is not None:
            return mu[comp] + np.einsum("kde,ke->kd", shear[comp], z)
        return mu[comp] + sd[comp, None] * z

    return standardize(draw(200 * m), draw(100 * m))


def fit_bic(Xtr, cov):
    t0 = time.perf_counter()
    best, best_bic = None, np.inf
    for k in range(1, K_MAX + 1):
        g = GaussianMixture(k, covariance_type=cov, random_state=0).fit(Xtr)
        b = g.bic(Xtr)
        if b < best_bic:
            best, best_bic = g, b
    return best, time.perf_counter() - t0, best.n_components


def fit_bgmm(Xtr, cov):
    t0 = time.perf_counter()
    g = BayesianGaussianMixture(n_components=K_MAX, covariance_type=cov, max_iter=500, random_state=0).fit(Xtr)
    return g, time.perf_counter() - t0, int(np.sum(g.weights_ > BGMM_THRESHOLD))


def fit_ours_cv(Xtr, warm: set):
    def search():
        return GridSearchCV(OverparamGMM(random_state=0), CV_GRID, cv=3).fit(Xtr)

    compile_s = np.nan
    key = (Xtr.shape, "cv")
    if key not in warm:
        t0 = time.perf_counter()
        search()
        compile_s = time.perf_counter() - t0
        warm.add(key)
    t0 = time.perf_counter()
    gs = search()
    secs = time.perf_counter() - t0
    g = gs.best_estimator_
    print(f"  CV chose {gs.best_params_}", flush=True)
    return g, secs, g.n_components_, compile_s


def fit_ours(Xtr, settings, warm: set):
    if settings == "cv":
        return fit_ours_cv(Xtr, warm)
    static = ("n_init", "covariance_type", "algorithm", "init", "max_iter", "n_short")
    key = (Xtr.shape, tuple((k, settings.get(k)) for k in static))
    compile_s = np.nan
    if key not in warm:  # warm-up fit: compiles for this shape and these static options
        t0 = time.perf_counter()
        OverparamGMM(random_state=1, **settings).fit(Xtr)
        compile_s = time.perf_counter() - t0
        warm.add(key)
    t0 = time.perf_counter()
    g = OverparamGMM(random_state=0, **settings).fit(Xtr)
    secs = time.perf_counter() - t0
    return g, secs, g.n_components_, compile_s


def run_one(dataset, Xtr, Xte, ours: dict, warm: set, extra: dict | None = None, m=None, sk=True, bic=True):
    rows = []

    def add(model, g, secs, k, compile_s=np.nan):
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "test_loglik": g.score(Xte),
                "seconds": secs,
                "compile_seconds": compile_s,
                "components": k,
                "m": m,
                "n_train": Xtr.shape[0],
                "d": Xtr.shape[1],
            }
        )

    if sk and bic:
        for cov in SK_TYPES:
            add(f"GMM {cov} BIC", *fit_bic(Xtr, cov))
    if sk:
        for cov in SK_TYPES:
            add(f"BGMM {cov}", *fit_bgmm(Xtr, cov))
    for name, settings in {**ours, **(extra or {})}.items():
        add(name, *fit_ours(Xtr, settings, warm))
    return rows


def summarize_real(df: pd.DataFrame) -> str:
    lines = ["| dataset | model | held-out loglik/sample | gap to best sklearn | seconds | compile s | components |"]
    lines.append("|---|---|---|---|---|---|---|")
    for ds, sub in df.groupby("dataset", sort=False):
        best_sk = sub[~sub.model.str.startswith("ours")].test_loglik.max()
        for _, r in sub.iterrows():
            comp = "" if np.isnan(r.compile_seconds) else f"{r.compile_seconds:.1f}"
            lines.append(
                f"| {ds} | {r.model} | {r.test_loglik:.3f} | {r.test_loglik - best_sk:+.3f} | {r.seconds:.3f} | "
                f"{comp} | {int(r.components)} |"
            )
    return "\n".join(lines)


def summarize_synthetic(df: pd.DataFrame) -> str:
    df = df.assign(hit=df.components == df.m)
    best_sk = df[~df.model.str.startswith("ours")].groupby("dataset").test_loglik.max()
    df = df.assign(gap=df.test_loglik - df.dataset.map(best_sk))
    out = ["Overall (all synthetic data sets):", ""]
    out.append("| model | recovered m | mean held-out loglik | mean gap to best sklearn | median seconds |")
    out.append("|---|---|---|---|---|")
    for model, sub in df.groupby("model", sort=False):
        out.append(
            f"| {model} | {sub.hit.mean():.1%} ({int(sub.hit.sum())}/{len(sub)}) | {sub.test_loglik.mean():.3f} | "
            f"{sub.gap.mean():+.3f} | {sub.seconds.median():.3f} |"
        )
    out += ["", "Recovered m by (d, m) cell (fraction of seeds):", ""]
    piv = df.pivot_table(index=["d", "m"], columns="model", values="hit", aggfunc="mean", sort=False)
    piv = piv[[c for c in df.model.unique()]]
    out.append("| d | m | " + " | ".join(piv.columns) + " |")
    out.append("|---|---|" + "---|" * len(piv.columns))
    for (d, m), r in piv.iterrows():
        out.append(f"| {d} | {int(m)} | " + " | ".join(f"{v:.2f}" for v in r.values) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: two data sets, two seeds")
    ap.add_argument("--tune", action="store_true", help="settings search on tuning seeds 100-104")
    ap.add_argument("--dims", type=int, nargs="+", default=list(range(2, 11)))
    ap.add_argument("--ms", type=int, nargs="+", default=list(range(3, 9)))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--skip-real", action="store_true", help="keep the real-data table of an earlier run")
    ap.add_argument("--skip-synthetic", action="store_true", help="keep the synthetic table of an earlier run")
    ap.add_argument(
        "--hard", action="store_true", help="small, close or sheared components: recovery of m (d 2, 5; m 3, 5)"
    )
    ap.add_argument("--kinds", nargs="+", default=["small", "close", "sheared"], help="kinds of --hard data")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warm: set = set()
    RESULTS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    if args.hard:
        rows = []
        for kind in args.kinds:
            for d in (2, 5):
                for m in (3, 5):
                    for seed in range(args.seeds):
                        Xtr, Xte = hard_synthetic(kind, d, m, seed)
                        for r in run_one(f"{kind} d={d} m={m} s={seed}", Xtr, Xte, HARD_OURS, warm, m=m):
                            rows.append({**r, "kind": kind})
                    print(f"{kind} d={d} m={m} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        df = pd.DataFrame(rows)
        df["hit"] = df.components == df.m
        table = (
            df.groupby(["kind", "model"])
            .agg(recovered=("hit", "mean"), loglik=("test_loglik", "mean"), seconds=("seconds", "median"))
            .reset_index()
        )
        print(table.to_string(index=False))
        df.to_csv(RESULTS / "estimator_hard.csv", index=False)
        (RESULTS / "estimator_hard.txt").write_text(table.to_string(index=False) + "\n")
        return

    if args.tune:
        grid = {
            f"merge_tol={mt} n_init={ni}": {"merge_tol": mt, "n_init": ni} for mt in (0.5, 1.0, 2.0) for ni in (1, 4)
        }
        rows = []
        for d in (2, 6, 10):
            for m in (3, 8):
                for seed in range(100, 105):
                    Xtr, Xte = synthetic(d, m, seed)
                    rows += run_one(f"syn d={d} m={m} s={seed}", Xtr, Xte, grid, warm, m=m, sk=False)
                print(f"tuning d={d} m={m} done", flush=True)
        df = pd.DataFrame(rows)
        df["hit"] = df.components == df.m
        print(df.groupby("model").agg(hit=("hit", "mean"), loglik=("test_loglik", "mean")).to_string())
        df.to_csv(RESULTS / "estimator_tuning.csv", index=False)
        return

    rows, t_start = [], time.perf_counter()
    suffix = "_quick" if args.quick else ""
    real_csv = RESULTS / f"estimator_vs_sklearn_real{suffix}.csv"
    syn_csv = RESULTS / f"estimator_vs_sklearn_synthetic{suffix}.csv"
    if not args.skip_real:
        for i, (name, Xtr, Xte) in enumerate(real_datasets()):
            if args.quick and i >= 2:
                break
            rows += run_one(name, Xtr, Xte, OURS, warm, extra=OURS_REAL_EXTRA)
            print(f"{name}: done ({time.perf_counter() - t_start:.0f} s)", flush=True)
        pd.DataFrame(rows).to_csv(real_csv, index=False)
    dims, ms, seeds = (args.dims, args.ms, args.seeds) if not args.quick else ([2, 5], [3, 5], 2)
    if not args.skip_synthetic:
        syn_rows = []
        for d in dims:
            for m in ms:
                for seed in range(seeds):
                    Xtr, Xte = synthetic(d, m, seed)
                    syn_rows += run_one(f"syn d={d} m={m} s={seed}", Xtr, Xte, OURS, warm, m=m)
                print(f"synthetic d={d} m={m}: done ({time.perf_counter() - t_start:.0f} s)", flush=True)
                pd.DataFrame(syn_rows).to_csv(syn_csv, index=False)
    # the report is built from both tables (either may come from an earlier run)
    text = []
    if real_csv.exists():
        text += ["## Real data (70/30 split, standardized)", "", summarize_real(pd.read_csv(real_csv)), ""]
    if syn_csv.exists():
        syn = pd.read_csv(syn_csv)
        cells = sorted(set(zip(syn.d, syn.m, strict=True)))
        n_seeds = syn.groupby(["d", "m"]).size().max() // syn.model.nunique()
        text += [
            f"## Synthetic well-separated mixtures ({len(cells)} (d, m) cells: d in {sorted(set(syn.d))}, "
            f"m in {sorted(set(syn.m.astype(int)))}; {n_seeds} seeds each)",
            "",
            summarize_synthetic(syn),
        ]
    text = "\n".join(text)
    print(text)
    (RESULTS / f"estimator_vs_sklearn{suffix}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
