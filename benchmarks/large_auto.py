"""The default fit on large data, where "auto" fits its candidate types on a subsample of
AUTO_ROWS rows (and, since the sixteenth session, prices them as all rows and starts the
final fit from the chosen one): component count, type and held-out log-likelihood on
random mixtures that hold a close pair and a small component, so that a change to that
path can be compared by running this script on two trees.

    .venv/bin/python benchmarks/large_auto.py                       # 12 mixtures at N = 1e5
    .venv/bin/python benchmarks/large_auto.py --rows 50000 --seeds 0 6 --out results/a.csv
    PYTHONPATH=/path/to/other/tree/src .venv/bin/python benchmarks/large_auto.py --out results/b.csv

Mixture ``seed``: d = 3 (even seeds) or 8 (odd), m = 3 + seed % 6 components with random
full covariances (``A A^T + 0.2 I``, A with entries of sd 0.3), means of sd 3 at least
``sep`` = 1.5, 2, 2.5 or 3 apart (by seed), the last mean moved next to the first (a close
pair, 0.6 sep away), the second-to-last component at 1% of the weight. N training rows and
20000 held-out rows from the same mixture. One process; each fit timed after the previous
one (the first fits of each dimension include their compilation: compare the later
rows). Writes one CSV row per mixture (``--out``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from overgmm import OverparamGMM

ROOT = Path(__file__).resolve().parent.parent


def mixture(seed: int, n_rows: int, n_test: int = 20000):
    """(X_train (n_rows, d), X_test (n_test, d), m) of the mixture described above."""
    rng = np.random.default_rng(seed)
    d, m = (3, 8)[seed % 2], 3 + seed % 6
    sep = (1.5, 2.0, 2.5, 3.0)[(seed // 2) % 4]
    means = [rng.normal(size=d) * 3]
    while len(means) < m:
        c = rng.normal(size=d) * 3
        if min(np.linalg.norm(c - x) for x in means) > sep:
            means.append(c)
    mu = np.array(means)
    mu[-1] = mu[0] + rng.normal(size=d) / np.sqrt(d) * sep * 0.6  # the close pair
    w = rng.dirichlet(np.full(m, 2.0))
    w[-2] = 0.01  # the small component
    w /= w.sum()
    A = rng.normal(size=(m, d, d)) * 0.3
    L = np.linalg.cholesky(A @ np.swapaxes(A, 1, 2) + 0.2 * np.eye(d))

    def draw(n, s):
        r = np.random.default_rng(s)
        lab = r.choice(m, size=n, p=w)
        return mu[lab] + np.einsum("nij,nj->ni", L[lab], r.normal(size=(n, d)))

    return draw(n_rows, seed * 7 + 1), draw(n_test, seed * 7 + 2), m


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="training rows per mixture")
    ap.add_argument("--seeds", type=int, nargs=2, default=[0, 12], help="seeds [first, last)")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "large_auto.csv")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(*args.seeds):
        X, Xt, m = mixture(seed, args.rows)
        t = time.perf_counter()
        est = OverparamGMM(random_state=0).fit(X)
        seconds = time.perf_counter() - t
        rows.append(
            {
                "seed": seed,
                "d": X.shape[1],
                "m": m,
                "k": int(est.n_components_),
                "type": est.covariance_type_,
                "heldout": float(est.score(Xt)),
                "seconds": seconds,
            }
        )
        print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)  # after each mixture: partial results survive
    df = pd.DataFrame(rows)
    print("| seed | d | m | k | type | held-out LL | s |\n|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        cells = (r["seed"], r["d"], r["m"], r["k"], r["type"], f"{r['heldout']:.4f}", f"{r['seconds']:.2f}")
        print("| " + " | ".join(map(str, cells)) + " |")
    print(f"k == m on {int((df.k == df.m).sum())} of {len(df)}; wrote {args.out}")


if __name__ == "__main__":
    main()
