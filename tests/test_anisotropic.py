"""The anisotropic rule's frame (:func:`overgmm.anisotropic.rotated_basis`): its mild axes
depend on the span and the teacher only, never on the basis an SVD happened to return."""

import jax.numpy as jnp
import numpy as np

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
