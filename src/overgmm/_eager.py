"""One compiled program per eager call of a numerical function.

Called outside ``jit``, a JAX function runs op by op, and XLA compiles every primitive for
every new shape on its own (a first ``Mixture(...).log_prob(x)`` compiled 36 programs; a
function that builds a ``lax.map`` body as a closure compiles that loop again on every
call, 0.5 s for each eager ``kl``). :func:`compiled_when_eager` runs such a function as one
``jax.jit`` program, cached per shape, when none of its arguments is being traced, and
inline under a transformation (``jit``, ``grad``, ``vmap``), where the caller's program
holds it anyway. Value checks that need concrete arrays belong in the caller, before the
call: inside, every array is traced.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax

F = TypeVar("F", bound=Callable[..., Any])


def traced(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def compiled_when_eager(fn: F | None = None, *, static_argnames: tuple[str, ...] = ()) -> Any:
    """Decorator: ``fn`` as one compiled program (``jax.jit`` with ``static_argnames``) when
    called on concrete values, ``fn`` itself when any argument is a tracer. ``fn`` must
    return arrays (a pytree of them)."""
    if fn is None:
        return functools.partial(compiled_when_eager, static_argnames=static_argnames)
    jitted = jax.jit(fn, static_argnames=static_argnames)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        dynamic = {k: a for k, a in kwargs.items() if k not in static_argnames}
        if traced((args, dynamic)):
            return fn(*args, **kwargs)
        return jitted(*args, **kwargs)

    call.jitted = jitted  # type: ignore[attr-defined]
    return call
