"""Each experiment's --quick variant runs here, and its claims are asserted as
docs/reproductions.md documents them."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from overgmm import experiments

# one process reproduces every quick variant of a paper, one after another (as
# ``overgmm reproduce --all --quick`` does), so that they share compiled programs
_REPRODUCE = """import sys
from pathlib import Path
from overgmm import experiments
from overgmm.experiments.runner import reproduce
for name, out in zip(sys.argv[1::2], sys.argv[2::2]):
    reproduce(experiments.get(name), quick=True, out=Path(out))
"""


def _paper_of(name: str) -> list[str]:
    """The names of the experiments of NAME's paper, in the registry's order."""
    for mod in experiments.MODULES:
        names = [e.name for e in importlib.import_module(f"overgmm.experiments.{mod}").EXPERIMENTS]
        if name in names:
            return names
    raise ValueError(name)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(name)`` returns the summary that NAME --quick wrote (with
    ``summary["out"]`` the folder and ``summary["by_name"]`` the claims by name). The
    first call for a paper reproduces all of that paper's quick variants in one new process
    with the caller's XLA_FLAGS, not the suite's fast-compile flags (tests/conftest.py):
    the quick reproductions are quadrature-bound and run 2.5x slower unoptimised."""
    cache: dict[str, dict] = {}

    def run(name: str) -> dict:
        if name not in cache:
            names = _paper_of(name)
            outs = {n: tmp_path_factory.mktemp(n) for n in names}
            env = {**os.environ, "XLA_FLAGS": os.environ.get("OVERGMM_TEST_XLA_FLAGS", "")}
            args = [str(a) for n in names for a in (n, outs[n])]
            done = subprocess.run([sys.executable, "-c", _REPRODUCE, *args], env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"reproducing {', '.join(names)} --quick failed:\n{done.stderr[-4000:]}"
            for n, out in outs.items():
                summary = json.loads((out / "summary.json").read_text())
                summary["out"] = out
                summary["by_name"] = {c["name"]: c for c in summary["claims"]}
                cache[n] = summary
        return cache[name]

    return run
