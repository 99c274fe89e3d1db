"""Which short-step scaling for the alternating Polyak method on data with learned
covariances: the papers' fixed ``1/pi_i`` (``scaled=True``) or EM's ``1/E[psi_i]``
(``scaled="mass"``), against EM and gradient EM from the same starts.

For each data set (a synthetic mixture of 4 sheared clusters in 3-D, and scikit-learn's
bundled iris, wine and, with ``--full``, breast_cancer, standardised) and each covariance type, every method
starts from the same over-parameterized start (n = 20, rows drawn from the data, weights
learned with EM weight steps, ``loss_star="decrease"``) and runs to ``tol = 1e-8`` or 300
steps. Reported: the final mean NLL minus the best over the methods (nats/sample), steps,
and failures. Counts of steps and losses, not seconds: load does not matter.

    python benchmarks/polyak_scaling.py [--out results/polyak_scaling.csv]
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

import overgmm as og


def datasets():
    from sklearn.datasets import load_breast_cancer, load_iris, load_wine

    rng = np.random.default_rng(0)
    out = {}
    for name, loader in (("iris", load_iris), ("wine", load_wine), ("breast_cancer", load_breast_cancer))[: 2 + FULL]:
        X = loader().data
        out[name] = (X - X.mean(0)) / X.std(0)
    centres = rng.normal(size=(4, 3)) * 4
    A = rng.normal(size=(4, 3, 3)) * 0.7
    lab = rng.integers(0, 4, 3000)
    X = centres[lab] + np.einsum("kde,ke->kd", A[lab], rng.normal(size=(3000, 3)))
    out["sheared4"] = (X - X.mean(0)) / X.std(0)
    return out


FULL = 0
METHODS = {
    "em": lambda p: og.em(p),
    "polyak_mass": lambda p: og.polyak(p, 1.0, 10, scaled="mass", loss_star="decrease", weights="em"),
    "polyak_pi": lambda p: og.polyak(p, 1.0, 10, scaled=True, loss_star="decrease", weights="em"),
    "gradient_em": lambda p: og.gradient_em(p, 1.0, weights="em"),
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="also breast_cancer (d = 30)")
    args = ap.parse_args(argv)
    global FULL
    FULL = int(args.full)
    rows = []
    for name, X in datasets().items():
        for kind in ("diag", "full"):
            Xj = jnp.asarray(X)
            problem = og.Problem.from_data(Xj, var_floor=1e-3)
            for seed in range(args.seeds):
                s0 = og.init.from_data(
                    jax.random.key(seed), Xj, jnp.ones(len(X)), 20, covariance_type=kind, floor=problem.floor
                )
                res = {}
                for mname, make in METHODS.items():
                    with np.errstate(all="ignore"):
                        sol = og.solve(make(problem), s0, max_steps=300, tol=1e-8)
                    final = float(og.nll(sol.final.student, Xj))
                    res[mname] = (final, int(sol.n_steps), int(sol.status))
                best = min(v[0] for v in res.values() if np.isfinite(v[0]))
                for mname, (final, steps, status) in res.items():
                    rows.append(
                        dict(
                            data=name,
                            cov=kind,
                            seed=seed,
                            method=mname,
                            nll=final,
                            gap=final - best,
                            steps=steps,
                            status=status,
                        )
                    )
    import pandas as pd

    df = pd.DataFrame(rows)
    summary = df.groupby(["cov", "method"]).agg(
        median_gap=("gap", "median"),
        max_gap=("gap", "max"),
        median_steps=("steps", "median"),
        failures=("status", lambda s: int((s == 1).sum())),
    )
    print(summary.to_string(float_format=lambda x: f"{x:.4g}"))
    print()
    print(df.groupby(["data", "cov", "method"])["gap"].median().unstack().to_string(float_format=lambda x: f"{x:.3g}"))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        df.to_csv(args.out + ".tmp", index=False)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
