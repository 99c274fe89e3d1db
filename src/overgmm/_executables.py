"""Compiled programs kept in the cache folder: a new process skips tracing, lowering and
compiling.

With JAX's persistent compilation cache (:mod:`overgmm._compilation_cache`) alone, a new
process still traces every Python function of a fit and lowers it to StableHLO before the
cache can hand it the compiled code: the cache is keyed by the lowered program. On iris
that was most of a cached first fit. :func:`persistent` wraps a function as ``jax.jit``
does and, when the cache is on, keeps each program it compiles as a serialized executable
(:mod:`jax.experimental.serialize_executable`, compressed) in the cache folder
(``executables/``, written whole by rename and checked on read, as the compilation cache's
entries). A later call with the same key, in this process or another, loads it and calls
it: nothing is traced, lowered or compiled. A program to be stored is compiled with JAX's
cache skipped (:func:`overgmm._compilation_cache.fresh_compilation`): an executable that
JAX loaded from its cache does not serialize whole.

The key is everything the compiled program depends on: the function's name and static
arguments, the pytree structure of the arguments (with their static parts, e.g. a
mixture's covariance type), each array's shape and dtype, the compiler options, the JAX
and jaxlib versions, the backend and its device kind, the host CPU's instruction sets,
``XLA_FLAGS``, and a digest of overgmm's own source files (any edit to the package makes
every stored program a miss). Only the key's digest names the entry; a key whose text
holds a memory address (an object without a value-based ``repr``) simply never hits.
Under a transformation (``jit``, ``vmap``, ``grad``), or with the cache off, the call is
the plain ``jax.jit``.

What is not stored (as JAX's own cache does not store it): a program with host callbacks
or side effects (its callbacks live in this process only); it is compiled once per
process and a marker tells later processes not to look for it. Loading needs the LAPACK
kernels that JAX otherwise registers while it lowers a linear-algebra call (a loaded
program calling an unregistered kernel crashes the process): :func:`_custom_calls_ready`
registers them first, and where that is not possible nothing is loaded.
:func:`release` drops the programs this process holds (with JAX's caches, when memory
mappings run short: :mod:`overgmm._mappings`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import platform
import threading
import weakref
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import serialize_executable

from overgmm import _mappings
from overgmm._compilation_cache import AtomicFileCache, fresh_compilation
from overgmm._eager import traced

FOLDER = "executables"
_FAILED = object()  # memo value: this key runs as the plain jit
_NOT_STORED = b"not stored"  # marker for a key whose program cannot be stored
_LOCK = threading.Lock()
_MEMOS: weakref.WeakSet = weakref.WeakSet()  # every wrapper's programs, for release()


@functools.cache
def source_digest() -> str:
    """BLAKE2b of every ``.py`` file of the installed overgmm package (path and bytes)."""
    root = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@functools.cache
def _custom_calls_ready() -> bool:
    """Register the kernels that JAX registers lazily when it lowers a call to them (the
    LAPACK routines; on GPUs the hybrid solvers), as a loaded program may call them without
    anything having been lowered. False where that is not possible: then nothing is loaded."""
    try:
        from jax._src.lax import linalg

        linalg.initialize_lapack()
    except (ImportError, AttributeError):  # pragma: no cover - another JAX layout
        return False
    try:
        from jaxlib import gpu_solver

        gpu_solver.initialize_hybrid_kernels()
    except (ImportError, AttributeError):
        pass  # no GPU plugin: nothing to register
    return True


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


def _host_cpu() -> str:
    """The host CPU's model and instruction-set flags (Linux; elsewhere the platform's
    name): XLA:CPU compiles for the host's instructions, so a folder shared by machines
    keeps one program per kind of CPU."""
    try:
        with open("/proc/cpuinfo") as info:
            lines = [ln for ln in info if ln.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


@functools.cache
def _platform() -> tuple:
    """Where a compiled program runs: JAX and jaxlib, the backend and device, the host CPU
    and the XLA flags of the environment."""
    import jaxlib

    device = jax.devices()[0]
    client = device.client
    return (
        jax.__version__,
        jaxlib.__version__,
        jax.default_backend(),
        device.device_kind,
        client.platform_version,
        _host_cpu(),
        os.environ.get("XLA_FLAGS", ""),
    )


def key_of(name: str, static: dict, treedef, leaves, options: dict | None) -> str:
    """The entry's key: a digest of everything the compiled program depends on (module
    docstring)."""
    text = repr(
        (
            name,
            sorted((k, repr(v)) for k, v in static.items()),
            str(treedef),
            tuple(_aval(x) for x in leaves),
            sorted((options or {}).items()),
            _platform(),
            bool(jax.config.read("jax_enable_x64")),
            source_digest(),
        )
    )
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _storable(compiled) -> bool:
    """Whether ``compiled`` can live in another process: no host callbacks, no effects."""
    unloaded = getattr(compiled._executable, "_unloaded_executable", None)
    if unloaded is None:
        return False
    held = ("host_callbacks", "keepalive", "ordered_effects", "unordered_effects")
    return not any(getattr(unloaded, f, True) for f in held)


def _in_tree(n: int):
    """The pytree of a flat program's arguments: ``n`` positional leaves, no keywords."""
    return jax.tree_util.tree_structure(((0,) * n, {}))


def _flat_tree(n: int):
    """The pytree of a flat program's outputs: a list of ``n`` leaves."""
    return jax.tree_util.tree_structure([0] * n)


def _load(blob: bytes):
    """(compiled program, output pytree) from a stored entry; raises if it does not load."""
    payload, n_in, out_tree = pickle.loads(zlib.decompress(blob))
    compiled = serialize_executable.deserialize_and_load(payload, _in_tree(n_in), _flat_tree(out_tree.num_leaves))
    return compiled, out_tree


class _Programs(dict):
    """One wrapper's programs in this process: a dict that :data:`_MEMOS` holds weakly, by
    identity."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__  # type: ignore[assignment]  # a dict hashed by identity


def release() -> None:
    """Drop every compiled program the wrappers of this process hold (they are loaded
    again from the cache folder when next called)."""
    for memo in list(_MEMOS):
        memo.clear()


_mappings.on_release(release)


def persistent(
    fn: Callable, name: str | None = None, *, static_argnames: tuple[str, ...] = (), compiler_options=None
) -> Any:
    """``jax.jit(fn, static_argnames=..., compiler_options=...)`` that keeps its compiled
    programs in the cache folder (module docstring). ``name`` identifies ``fn`` across
    processes (default: its module and qualified name, for a module-level function; a
    closure, lambda or wrapper without a ``name`` gets the plain jit); it and the static
    arguments must determine what ``fn`` computes. ``precompile(*args)`` compiles (or
    loads) a call's program without running it; ``lower`` is the plain jit's;
    ``_cache_size()`` counts the programs held in this process."""
    jitted = jax.jit(fn, static_argnames=static_argnames, compiler_options=compiler_options)
    if name is None:
        qualname = getattr(fn, "__qualname__", "<none>")
        # a closure, lambda or wrapper: its name does not say what it computes, never stored
        if "<" not in qualname and not hasattr(fn, "__wrapped__"):
            name = f"{fn.__module__}.{qualname}"
    memo = _Programs()
    _MEMOS.add(memo)
    locks: dict[tuple, threading.Lock] = {}

    def build(key, store, static, treedef, leaves):
        """(compiled program, output pytree) for ``key``: loaded from the store, else
        compiled (and stored where it can live in another process)."""
        blob = store.get(key)
        if blob == _NOT_STORED:
            write = False
        elif blob is None:
            write = True
        elif not _custom_calls_ready():
            write = False
        else:
            try:
                return _load(blob)
            except Exception:  # noqa: BLE001 - a stale or foreign entry: compiled and stored anew
                write = True
        holder = []

        def flat(*flat_leaves):
            args, kwargs = jax.tree_util.tree_unflatten(treedef, flat_leaves)
            out, out_tree = jax.tree_util.tree_flatten(fn(*args, **kwargs, **static))
            holder.append(out_tree)
            return out

        # to be stored, compiled here, not loaded from JAX's cache (only then it serializes whole)
        with fresh_compilation() if write else contextlib.nullcontext(False) as fresh:
            compiled = jax.jit(flat, compiler_options=compiler_options).lower(*leaves).compile()
        if write and fresh:
            try:
                if not _storable(compiled):
                    raise ValueError("host callbacks or effects")
                payload = serialize_executable.serialize(compiled)[0]
                entry = zlib.compress(pickle.dumps((payload, len(leaves), holder[-1])), 1)  # about 1/4
            except Exception:  # noqa: BLE001 - e.g. a host callback: compiled in this process only
                entry = _NOT_STORED
            store.put(key, entry, replace=blob is not None)
        return compiled, holder[-1]

    def entry_for(args, kwargs):
        """(program and output pytree, or None for the plain jit; leaves; static; memo key);
        ``kwargs`` loses the static ones."""
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
            with lock:  # one compilation per key, also with the estimator's compile threads
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
        program, out_tree = entry
        try:
            out = program(*leaves)
        except (TypeError, ValueError):  # a loaded program that does not take these arguments
            memo[local] = _FAILED
            return jitted(*args, **kwargs, **static)
        return jax.tree_util.tree_unflatten(out_tree, out)

    def precompile(*args, **kwargs) -> None:
        """Compile (or load), not run, the program of a call with these arguments (arrays
        or ``jax.ShapeDtypeStruct``), as :func:`call` will run it."""
        entry, _, static, _ = entry_for(args, kwargs)
        if entry is None:
            jitted.lower(*args, **kwargs, **static).compile()

    def cache_size() -> int:
        """Programs held in this process: the plain jit's and the stored or loaded ones."""
        return jitted._cache_size() + sum(1 for e in list(memo.values()) if e is not _FAILED)  # type: ignore[attr-defined]

    wrapped: Any = call
    wrapped.precompile = precompile
    wrapped.lower = jitted.lower
    wrapped._cache_size = cache_size
    wrapped.jitted = jitted
    return wrapped
