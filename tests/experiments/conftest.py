"""Each experiment's --quick variant runs here, and its claims are asserted as
docs/reproductions.md documents them."""

import pytest

from overgmm import experiments
from overgmm.experiments.runner import reproduce


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(name)`` runs NAME --quick once per session and returns its summary
    (with ``summary["out"]`` the folder and ``summary["by_name"]`` the claims by name)."""
    cache: dict[str, dict] = {}

    def run(name: str) -> dict:
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            cache[name] = reproduce(experiments.get(name), quick=True, out=out)
            cache[name]["out"] = out
            cache[name]["by_name"] = {c["name"]: c for c in cache[name]["claims"]}
        return cache[name]

    return run
