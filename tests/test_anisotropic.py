"""The anisotropic rule's frame (:func:`overgmm.anisotropic.rotated_basis`): its mild axes
depend on the span and the teacher only, never on the basis an SVD happened to return. The
sum over centres of every rule (:func:`overgmm.anisotropic.sum_over_centres`): kept or
recomputed for the gradient, the same value and gradient."""

import jax
import jax.numpy as jnp
import numpy as np

from overgmm import anisotropic
from overgmm.anisotropic import _dct, rotated_basis


def _teacher(d):
    t = np.zeros((2, d))
    t[:, 0] = [-3.0, 3.0]  # teacher differences along the first axis: s = 1
    return jnp.asarray(t)


def test_mild_axes_do_not_depend_on_the_span_basis():
    d = 5
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))[0]
    a = np.asarray(rotated_basis(jnp.eye(d), _teacher(d), 1))
    b = np.asarray(rotated_basis(jnp.asarray(rot), _teacher(d), 1))  # same span, turned
    assert np.allclose(np.abs(a[:, 0]), np.eye(d)[0], atol=1e-12)
    assert np.allclose(a[:, 1:], b[:, 1:], atol=1e-12)
    assert np.allclose(a.T @ a, np.eye(d), atol=1e-12)


def test_axis_aligned_mild_axes_are_the_dct_mixed_coordinate_axes_despite_near_ties():
    d = 5
    expected = np.eye(d)[:, 1:] @ _dct(d - 1).T
    for axis in (None, 1, 3):  # a near-tie (relative 1e-14 in length) against either axis
        t = np.array(_teacher(d))
        if axis is not None:
            t[:, axis] = [-3e-7, 3e-7]  # that axis comes out a hair shorter off the sharp span
        got = np.asarray(rotated_basis(jnp.eye(d), jnp.asarray(t), 1))[:, 1:]
        assert np.allclose(got, expected, atol=1e-6)


def test_sum_over_centres_stored_and_rematerialized_agree(monkeypatch):
    # what the backward pass needs kept from the forward pass, or each centre recomputed
    rng = np.random.default_rng(0)
    z, mu = jnp.asarray(rng.normal(size=(50, 2))), jnp.asarray(rng.normal(size=(4, 2)))
    centres = (jnp.asarray(rng.normal(size=(3, 2))), jnp.asarray([-0.3, -1.2, -2.0]))

    def total(m):
        def per_centre(item):
            x = item[0] + z
            return jnp.sum(jnp.exp(item[1]) * jax.nn.logsumexp(-0.5 * jnp.sum((x[:, None] - m) ** 2, -1), axis=1))

        return anisotropic.sum_over_centres(per_centre, centres, 50, 4)

    stored = jax.jit(jax.value_and_grad(total))(mu)
    assert "remat" not in str(jax.make_jaxpr(jax.grad(total))(mu))  # 600 entries: kept
    monkeypatch.setattr(anisotropic, "STORED_ENTRIES", 3 * 50 * 4 - 1)
    remat = jax.jit(jax.value_and_grad(total))(mu)
    np.testing.assert_allclose(stored[0], remat[0], rtol=1e-14)
    np.testing.assert_allclose(stored[1], remat[1], rtol=1e-12)
    assert "remat" in str(jax.make_jaxpr(jax.grad(total))(mu))  # the rematerialized branch was taken
