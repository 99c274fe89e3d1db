"""``overgmm fit PATH [--algorithm ...] [--out DIR]``: fit an :class:`~overgmm.OverparamGMM`
to a CSV file (numeric columns, optional header row), a ``.npy`` file (memory-mapped) or
Parquet (a file or a folder; numeric columns), streamed in chunks when the data exceed
``--memory-budget`` (Parquet always), on a Dask cluster with ``--scheduler`` or
``--workers``, and write (each to a temporary name, then renamed)

* ``model.json``: the settings and the fitted mixture (weights, means, covariances in the
  units of the data, in scikit-learn's shapes: (k, d, d) full, (k, d) diag, (k,)
  spherical, (d,) fixed), the component count, convergence and likelihood;
* ``components.png``: the data with the fitted components (1-sigma and 2-sigma ellipses):
  the data itself in 2-D, the first two principal components (of the standardized data)
  otherwise, a histogram with the fitted density in 1-D.

The component count is also printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from overgmm.cli._args import positive_int


def _n_components(text: str):
    return text if text == "auto" else positive_int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def model_to_dict(est, names: list[str]) -> dict:
    """The fitted estimator as plain JSON types."""
    import numpy as np

    return {
        "n_components": int(est.n_components_),
        "n_components_init": int(est.n_components_init_),
        "covariance_type": est.covariance_type_,
        "features": names,
        "weights": est.weights_.tolist(),
        "means": est.means_.tolist(),
        "covariances": np.asarray(est.covariances_).tolist(),
        "converged": bool(est.converged_),
        "n_iter": int(est.n_iter_),
        "n_merges": int(est.n_merges_),
        "mean_log_likelihood": float(est.lower_bound_),
        "params": {k: v for k, v in est.get_params().items()},
    }


def _bytes(text: str) -> float:
    """``2e9``, ``2GB``, ``512MiB``, ... -> bytes."""
    units = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    t = text.strip().upper()
    num = t.rstrip("KMGTIB")
    try:
        value = float(num) * units[t[len(num) :]]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a size such as 2e9, 2GB or 512MiB, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def _write_atomic(path: Path, write) -> None:
    """``write(tmp)`` to a temporary name beside ``path``, then rename over it: a failed
    write leaves any earlier file as it was."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fit(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np

    from overgmm import chunks as C
    from overgmm import streaming
    from overgmm.cluster import connect
    from overgmm.estimator import OverparamGMM

    columns = args.columns.split(",") if args.columns else None
    try:
        source, names = C.read(Path(args.data), columns=columns, memory_budget=args.memory_budget)
    except (OSError, ValueError) as err:
        print(f"overgmm fit: error: {err}", file=sys.stderr)
        return 2
    est = OverparamGMM(
        n_components=args.n_components,
        covariance_type=args.covariance_type,
        algorithm=args.algorithm,
        step_size=args.step_size,
        max_iter=args.max_iter,
        init=args.init,
        prune=args.prune,
        merge_tol=args.merge_tol,
        n_init=args.n_init,
        random_state=args.seed,
        standardize=not args.no_standardize,
        var_floor=args.var_floor,
        memory_budget=args.memory_budget,
        verbose=0 if args.quiet else 1,
    )
    in_memory = isinstance(source, C.ArrayChunks) and not isinstance(source.X, np.memmap)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught, connect(args.scheduler, args.workers) as client:
            warnings.simplefilter("always")
            if client is not None:
                data = C.to_dask(source)
            elif in_memory or (isinstance(source, C.ArrayChunks) and 32 * source.X.size <= args.memory_budget):
                data = np.asarray(source.X, dtype=np.float64)  # small enough: the in-memory fit
            else:
                data = source
            est.fit(data)
            view = C.ArrayChunks(data) if isinstance(data, np.ndarray) else source
            count = view.n_rows
            shown, _ = streaming.subsample(view, streaming.ALL, count, target=5000)
    except (OSError, ValueError, FloatingPointError) as err:
        print(f"overgmm fit: error: {err}", file=sys.stderr)
        return 2
    secs = time.perf_counter() - t0
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = model_to_dict(est, names)
    model["n_samples"] = int(count)
    model["seconds"] = round(secs, 3)
    model["data"] = {"path": str(args.data), "streamed": not isinstance(data, np.ndarray)}
    _write_atomic(out / "model.json", lambda p: p.write_text(json.dumps(model, indent=2)))
    _write_atomic(out / "components.png", lambda p: _figure(est, shown, names, p))
    print(
        f"components: {est.n_components_} (started from {est.n_components_init_}; "
        f"{est.n_merges_} merged, {est.n_components_init_ - est.n_components_ - est.n_merges_} pruned)"
    )
    print(f"mean log-likelihood per sample: {est.lower_bound_:.4f}; {est.n_iter_} steps, {secs:.2f} s")
    print(f"wrote {out / 'model.json'}, {out / 'components.png'}")
    return 0


def covariance_matrices(est):
    """The fitted covariances as matrices, shape (n_components_, d, d), for every type."""
    import numpy as np

    k, d = est.means_.shape
    cov = np.asarray(est.covariances_)
    if est.covariance_type_ == "full":
        return cov
    if est.covariance_type_ == "diag":
        return cov[:, :, None] * np.eye(d)
    if est.covariance_type_ == "spherical":
        return cov[:, None, None] * np.eye(d)
    return np.broadcast_to(np.diag(cov), (k, d, d))


def _ellipse(ax, mean, cov2, color, sigmas=(1.0, 2.0)):
    import numpy as np
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov2)
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    for s in sigmas:
        w, h = 2 * s * np.sqrt(np.maximum(vals[::-1], 0))
        ax.add_patch(Ellipse(mean, w, h, angle=angle, fill=False, color=color, lw=1.2, alpha=0.9 / s))


def _figure(est, X, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    k, d = est.means_.shape
    mats = covariance_matrices(est)
    diag = np.diagonal(mats, axis1=-2, axis2=-1)
    colors = plt.cm.tab10(np.arange(k) % 10)
    rng = np.random.default_rng(0)
    show = rng.choice(X.shape[0], size=min(X.shape[0], 5000), replace=False)
    fig, ax = plt.subplots(figsize=(6, 5))
    if d == 1:
        grid = np.linspace(X.min() - 3 * np.sqrt(diag.max()), X.max() + 3 * np.sqrt(diag.max()), 400)
        ax.hist(X[:, 0], bins=60, density=True, color="0.8")
        ax.plot(grid, np.exp(est.score_samples(grid[:, None])), "k", lw=1.5, label="fitted density")
        for i in range(k):
            dens = est.weights_[i] * np.exp(-0.5 * (grid - est.means_[i, 0]) ** 2 / diag[i, 0])
            ax.plot(grid, dens / np.sqrt(2 * np.pi * diag[i, 0]), color=colors[i], lw=1)
        ax.set_xlabel(names[0])
        ax.legend(fontsize=8)
    else:
        if d == 2:
            P, means, covs = X, est.means_, list(mats)
            labels = names
        else:
            mu, sd = X.mean(0), X.std(0)
            sd[sd == 0] = 1.0
            _, _, vt = np.linalg.svd((X - mu) / sd, full_matrices=False)
            V = vt[:2].T
            P = ((X - mu) / sd) @ V
            means = ((est.means_ - mu) / sd) @ V
            covs = [V.T @ (c / np.outer(sd, sd)) @ V for c in mats]
            labels = ["principal component 1", "principal component 2"]
        lab = est.predict(X[show])
        ax.scatter(P[show, 0], P[show, 1], s=4, c=colors[lab], alpha=0.5, linewidths=0)
        for i in range(k):
            _ellipse(ax, means[i], covs[i], colors[i])
            ax.plot(*means[i], "x", color="k", ms=4 + 20 * est.weights_[i])
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    ax.set_title(
        f"{est.n_components_} components (from {est.n_components_init_}); {est.algorithm}, {est.covariance_type_}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def register(sub) -> None:
    p = sub.add_parser(
        "fit", help="fit an over-parameterized mixture to a CSV, .npy or Parquet file and report its component count"
    )
    p.add_argument(
        "data",
        help="CSV (numeric columns, optional header row), .npy (memory-mapped) or Parquet (a file or a folder "
        "of them, read one row group at a time)",
    )
    p.add_argument("--out", default="results/fit", help="output folder (default results/fit)")
    p.add_argument("--n-components", type=_n_components, default="auto", help="starting components: int or auto")
    p.add_argument(
        "--covariance-type",
        choices=["full", "diag", "spherical", "fixed", "auto"],
        default="diag",
        help="full, diag (default), spherical, fixed (identity after standardization), "
        "or auto (full or diag, whichever has the lower BIC)",
    )
    p.add_argument("--algorithm", choices=["em", "gradient_em", "polyak"], default="em")
    p.add_argument("--step-size", type=float, default=1.0)
    p.add_argument("--max-iter", type=positive_int, default=200)
    p.add_argument("--init", choices=["data", "kmeans++"], default="data")
    p.add_argument("--prune", type=_non_negative_float, default=0.01, help="weight threshold (default 0.01)")
    p.add_argument("--merge-tol", type=_non_negative_float, default=1.0, help="0 disables merging (default 1)")
    p.add_argument("--n-init", type=positive_int, default=1, help="restarts, run together")
    p.add_argument("--var-floor", type=_non_negative_float, default=1e-3)
    p.add_argument("--no-standardize", action="store_true", help="fit in the units of the data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--columns", default=None, help="Parquet: comma-separated columns to use (default all)")
    p.add_argument(
        "--memory-budget",
        type=_bytes,
        default=2**30,
        help="bytes the data may take in memory (default 1GiB); larger .npy data and all Parquet data are "
        "streamed in chunks (exact EM, one pass per step)",
    )
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port): fit on that cluster")
    p.add_argument("--workers", type=positive_int, default=1, help="fit on a local Dask cluster of N processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_fit)
