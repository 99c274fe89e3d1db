"""From resolved run configs to computed runs: one :func:`overgmm.config.run_seeds` call
per batch of runs that differ only in their seed (the schema builds the teacher, the
students, the problem and the algorithm), read out per run for the store.

The driver caches its compiled functions on (algorithm config, loop settings, shapes),
so a worker compiles each group's batch shape once, not once per task.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

from overgmm import config


def run_group(configs: list[dict], group: str) -> list[dict]:
    """Run configs that differ only in their seed, in one compiled ``vmap`` call.

    Returns, per config: ``{"columns": {name: array (n_records, ...)}, "final":
    {"means", "weights"}, "status", "failed_at"}``.
    """
    seeds = [int(c["seed"]) for c in configs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = config.run_seeds(configs[0], seeds)
    means = np.asarray(hist.final.student.means)
    weights = np.asarray(jnp.exp(hist.final.student.log_weights))
    return [
        {
            "columns": {k: v[b] for k, v in hist.columns.items()},
            "final": {"means": means[b].tolist(), "weights": weights[b].tolist()},
            "status": int(hist.status[b]),
            "failed_at": int(hist.failed_at[b]),
        }
        for b in range(len(seeds))
    ]
