"""Exported programs: a new process skips tracing and lowering.

With the persistent compilation cache (:mod:`overgmm._compilation_cache`) a new process
still traces every Python function of a fit and lowers it to StableHLO before the cache
can hand it the compiled code: on iris that is most of a cached first fit (1.2 s of
tracing and lowering for 17 programs). :func:`persistent` wraps a function as ``jax.jit``
does and, when the cache is on, also keeps each program it traces as a serialized
:class:`jax.export.Exported` in the cache folder (``exported/``, written whole by rename
and checked on read, as the compilation cache's entries). A later call with the same key,
in this process or another, deserializes it and calls it; JAX then compiles a thin
wrapper around it, which the compilation cache holds after the first time.

The key is everything the traced program depends on: the function's name and static
arguments, the pytree structure of the arguments (with their static parts, e.g. a
mixture's covariance type), each array's shape and dtype, the compiler options, the JAX
version and backend, and a digest of overgmm's own source files (any edit to the package
makes every stored program a miss). Only the key's digest names the entry; a key whose
text holds a memory address (an object without a value-based ``repr``) simply never hits.
Under a transformation (``jit``, ``vmap``, ``grad``), or with the cache off, the call is
the plain ``jax.jit``. A program that cannot be exported (a host callback) runs as the
plain ``jax.jit`` too.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from overgmm._compilation_cache import AtomicFileCache
from overgmm._eager import traced

FOLDER = "exported"
_FAILED = object()  # memo value: this key cannot be exported, use the plain jit
_NOT_EXPORTABLE = b"not exportable"  # stored for such a key, so later processes skip the try
_LOCK = threading.Lock()


@functools.cache
def source_digest() -> str:
    """BLAKE2b of every ``.py`` file of the installed overgmm package (path and bytes)."""
    root = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _store() -> AtomicFileCache | None:
    folder = getattr(jax.config, "jax_compilation_cache_dir", None)
    if not folder:
        return None
    return _stores(str(folder))


@functools.cache
def _stores(folder: str) -> AtomicFileCache | None:
    try:
        return AtomicFileCache(Path(folder) / FOLDER)
    except OSError:
        return None


def _aval(leaf) -> tuple:
    """(shape, dtype, weakly typed): a Python number is weakly typed, as under ``jit``."""
    if type(leaf) in (bool, int, float, complex):  # not NumPy scalars (np.float64 is a float)
        a = np.asarray(leaf)
        return (tuple(a.shape), str(a.dtype), True)
    a = leaf if hasattr(leaf, "dtype") and hasattr(leaf, "shape") else np.asarray(leaf)
    return (tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False)))


def key_of(name: str, static: dict, treedef, leaves, options: dict | None) -> str:
    """The entry's key: a digest of everything the traced program depends on (module
    docstring)."""
    text = repr(
        (
            name,
            sorted((k, repr(v)) for k, v in static.items()),
            str(treedef),
            tuple(_aval(x) for x in leaves),
            sorted((options or {}).items()),
            jax.__version__,
            jax.default_backend(),
            bool(jax.config.read("jax_enable_x64")),
            source_digest(),
        )
    )
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def persistent(
    fn: Callable, name: str | None = None, *, static_argnames: tuple[str, ...] = (), compiler_options=None
) -> Any:
    """``jax.jit(fn, static_argnames=..., compiler_options=...)`` that keeps its programs as
    exported programs in the cache folder (module docstring). ``name`` identifies ``fn``
    across processes (default: its module and qualified name, for a module-level function;
    a closure, lambda or wrapper without a ``name`` gets the plain jit); it and the static
    arguments must determine what ``fn`` computes. ``precompile(*args)`` compiles a call's
    program without running it; ``lower`` and ``_cache_size`` are the plain jit's."""
    jitted = jax.jit(fn, static_argnames=static_argnames, compiler_options=compiler_options)
    if name is None:
        qualname = getattr(fn, "__qualname__", "<none>")
        # a closure, lambda or wrapper: its name does not say what it computes, never stored
        if "<" not in qualname and not hasattr(fn, "__wrapped__"):
            name = f"{fn.__module__}.{qualname}"
    memo: dict[tuple, Any] = {}
    locks: dict[tuple, threading.Lock] = {}

    def build(key, store, static, treedef, leaves):
        """The callable for ``key``: loaded from the store, else exported and stored."""
        blob = store.get(key)
        if blob == _NOT_EXPORTABLE:
            return _FAILED
        if blob is not None:
            try:
                payload, out_tree = pickle.loads(blob)
                return jax.jit(jax.export.deserialize(payload).call, compiler_options=compiler_options), out_tree
            except Exception:  # noqa: BLE001 - a stale or foreign entry: export anew
                pass
        holder = []

        def flat(*flat_leaves):
            args, kwargs = jax.tree_util.tree_unflatten(treedef, flat_leaves)
            out, out_tree = jax.tree_util.tree_flatten(fn(*args, **kwargs, **static))
            holder.append(out_tree)
            return out

        try:
            exp = jax.export.export(jax.jit(flat, compiler_options=compiler_options))(*leaves)
            payload = exp.serialize()
        except ImportError:  # no flatbuffers: nothing to store, run the plain jit
            return _FAILED
        except Exception:  # noqa: BLE001 - e.g. a host callback: not exportable, run the plain jit
            store.put(key, _NOT_EXPORTABLE)
            return _FAILED
        try:
            store.put(key, pickle.dumps((payload, holder[-1])))
        except (pickle.PicklingError, TypeError, AttributeError):
            pass  # an output structure that does not pickle: exported in this process only
        return jax.jit(exp.call, compiler_options=compiler_options), holder[-1]

    def entry_for(args, kwargs):
        """(store's entry or None for the plain jit, leaves); ``kwargs`` loses the static ones."""
        store = None if name is None else _store()
        static = {k: kwargs.pop(k) for k in static_argnames if k in kwargs}
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        if store is None or traced(leaves):
            return None, leaves, static, None
        # in this process: a cheap key (a digest only for the store, on a miss)
        local = (tuple(sorted(static.items())), treedef, tuple(_aval(x) for x in leaves), store)
        entry = memo.get(local)
        if entry is None:
            with _LOCK:
                lock = locks.setdefault(local, threading.Lock())
            with lock:  # one export per key, also with the estimator's compile threads
                entry = memo.get(local)
                if entry is None:
                    key = key_of(name, static, treedef, leaves, compiler_options)
                    entry = memo[local] = build(key, store, static, treedef, leaves)
        return (None if entry is _FAILED else entry), leaves, static, local

    @functools.wraps(fn)
    def call(*args, **kwargs):
        entry, leaves, static, local = entry_for(args, kwargs)
        if entry is None:
            return jitted(*args, **kwargs, **static)
        runner, out_tree = entry
        try:
            out = runner(*leaves)
        except (TypeError, ValueError):  # a loaded program that does not take these arguments
            memo[local] = _FAILED
            return jitted(*args, **kwargs, **static)
        return jax.tree_util.tree_unflatten(out_tree, out)

    def precompile(*args, **kwargs) -> None:
        """Compile (not run) the program of a call with these arguments (arrays or
        ``jax.ShapeDtypeStruct``), as :func:`call` will run it: into the compilation cache."""
        entry, leaves, static, _ = entry_for(args, kwargs)
        if entry is None:
            jitted.lower(*args, **kwargs, **static).compile()
        else:
            entry[0].lower(*leaves).compile()

    def cache_size() -> int:
        """Programs compiled in this process: the plain jit's and the exported ones'."""
        runners = [e[0] for e in list(memo.values()) if e is not _FAILED]
        return jitted._cache_size() + sum(r._cache_size() for r in runners)  # type: ignore[attr-defined]

    wrapped: Any = call
    wrapped.precompile = precompile
    wrapped.lower = jitted.lower
    wrapped._cache_size = cache_size
    wrapped.jitted = jitted
    return wrapped
