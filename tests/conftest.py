"""Suite-wide setup: float64 is switched on once, by importing overgmm, before any test."""

import numpy as np
import pytest

import overgmm  # noqa: F401  (enables jax_enable_x64)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
