"""Figure conventions shared by the experiments' figure functions (which read only
tables). Importing this module imports matplotlib (Agg backend); the numerical core
never does."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

LOG_FLOOR = 1e-300  # the smallest value a log axis shows


def subplots(ncols: int = 1, nrows: int = 1, width: float = 4.6, height: float = 3.6):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.ravel()


def positive(y) -> np.ndarray:
    """Values for a log axis: zeros and negatives clipped to a tiny positive number."""
    return np.maximum(np.asarray(y, float), LOG_FLOOR)


def mark_polyak(ax, df: pd.DataFrame, x: str, y: str, color=None, label: str | None = "Polyak steps") -> None:
    """Mark the records at which a long Polyak step was taken (downward triangles)."""
    if "polyak" not in df:
        return
    long = df[df["polyak"].astype(bool)]
    if len(long):
        ax.plot(long[x], positive(long[y]), "v", ms=3.5, color=color, label=label, zorder=3)


def save(fig, out: Path, name: str, caption: str) -> Path:
    """Add the caption (backend, settings) under the axes and write ``out/name.png``."""
    fig.text(0.01, 0.005, caption, fontsize=6.5, va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = Path(out) / f"{name}.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def backend_caption(cfg: dict, tables_backend: str | None = None) -> str:
    if cfg.get("backend") == "monte-carlo":
        text = f"expectations: fresh Monte Carlo, {cfg.get('mc_samples')} samples per step (the papers' setting)"
    else:
        text = "expectations: deterministic quadrature on the span of the means, float64 (accuracy: docs)"
    if tables_backend:
        text += f" [{tables_backend}]"
    return text + f"; seed {cfg.get('seed')}" + ("; --quick" if cfg.get("quick") else "")
