"""The persistent compilation cache: on by default in the user cache folder, off on request."""

import os
import subprocess
import sys

SCRIPT = """
import jax.numpy as jnp, numpy as np, overgmm as og
X = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)))
og.solve(og.em(og.Problem.from_data(X)), og.Mixture([[0.0, 0.0], [1.0, 1.0]], covariance_type="diag"), max_steps=5)
print(og.COMPILATION_CACHE)
"""


def _run(tmp_path, **env):
    full = {**os.environ, "OVERGMM_CACHE_DIR": str(tmp_path / "cache"), **env}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_cache_is_written_to_the_user_folder(tmp_path):
    assert _run(tmp_path) == str(tmp_path / "cache")
    assert any((tmp_path / "cache").iterdir())


def test_cache_can_be_turned_off(tmp_path):
    assert _run(tmp_path, OVERGMM_CACHE="0") == "None"
    assert not (tmp_path / "cache").exists()
