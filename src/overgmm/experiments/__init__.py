"""The papers' experiments (SPEC section 6), one module per paper: each experiment is
a config (data), a run that writes tidy tables, claims checked against the tables, and
a figure function that reads only the tables. ``overgmm reproduce`` runs them.

Not imported by ``import overgmm``: ``from overgmm import experiments``.
"""

from __future__ import annotations

import importlib

from overgmm.experiments.base import Experiment

MODULES = ("xu2024", "zhang2024", "zhou2025", "wang2026")


def registry() -> dict[str, Experiment]:
    """All experiments by name, in the papers' order."""
    found: dict[str, Experiment] = {}
    for mod in MODULES:
        for exp in importlib.import_module(f"overgmm.experiments.{mod}").EXPERIMENTS:
            found[exp.name] = exp
    return found


def get(name: str) -> Experiment:
    """The experiment called ``name`` (case-insensitive), or a ValueError listing the names."""
    reg = registry()
    for key, exp in reg.items():
        if key.lower() == str(name).lower():
            return exp
    raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(reg)}")
