"""The fitted mixture drawn over its data (``components.png`` of ``overgmm fit``): the
data itself in 2-D, its first two principal components (of the standardized data) in
more dimensions, a histogram with the fitted density in 1-D; each component with its
1-sigma and 2-sigma ellipses."""

from __future__ import annotations

from pathlib import Path


def covariance_matrices(est):
    """The fitted covariances as matrices, shape (n_components_, d, d), for every type."""
    import numpy as np

    from overgmm import covariances

    k, d = est.means_.shape
    return covariances.public(est.covariance_type_).matrices_in_units(np.asarray(est.covariances_), k, d)


def _ellipse(ax, mean, cov2, color, sigmas=(1.0, 2.0)):
    import numpy as np
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov2)
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    for s in sigmas:
        w, h = 2 * s * np.sqrt(np.maximum(vals[::-1], 0))
        ax.add_patch(Ellipse(mean, w, h, angle=angle, fill=False, color=color, lw=1.2, alpha=0.9 / s))


def figure(est, X, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    k, d = est.means_.shape
    gaps = np.isnan(X).any(axis=1)
    if gaps.any():  # missing values: the complete rows are drawn (all rows, gaps at the mean, if none is)
        X = X[~gaps] if np.count_nonzero(~gaps) >= 2 else np.where(np.isnan(X), np.nanmean(X, axis=0), X)
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
        f"{est.n_components_} components (from {est.n_components_init_}); {est.algorithm}, {est.covariance_type_}"
        + ("\nrows with missing values not drawn" if gaps.any() else ""),
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
