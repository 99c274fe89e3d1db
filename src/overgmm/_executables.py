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
arguments (with their types), the pytree structure of the arguments (with their static
parts, e.g. a mixture's covariance type), each array's shape and dtype, the compiler
options, JAX's settings that change a traced program (matmul precision, dtype promotion,
...), the JAX, jaxlib, NumPy, SciPy and optax versions, the backend and its device kind,
the host CPU's instruction sets, ``XLA_FLAGS``, and a digest of overgmm's own source files
(any edit to the package makes every stored program a miss). Only the key's digest names
the entry. A key whose text holds a memory address (an object without a value-based
``repr``, such as an optax optimizer's functions) is never used: a freed address is reused
by another object, so it could name another program; such calls are the plain
``jax.jit``, as are calls under a transformation (``jit``, ``vmap``, ``grad``), under
``jax.disable_jit()``, and with the cache off. Entries are unpickled when loaded: share a
cache folder only as far as you would share JAX's own (which holds executables too).

What is not stored (as JAX's own cache does not store it): a program with host callbacks
or side effects (its callbacks live in this process only); it is compiled once per
process and a marker tells later processes not to look for it. Loading needs the LAPACK
kernels that JAX otherwise registers while it lowers a linear-algebra call (a loaded
program calling an unregistered kernel crashes the process): :func:`_custom_calls_ready`
registers them first, and where that is not possible nothing is loaded. A loaded program
that fails when run (other than by refusing the arguments) is compiled anew, and its
entry replaced.
:func:`release` drops the programs this process holds (with JAX's caches, when memory
mappings run short: :mod:`overgmm._mappings`).
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import os
import pickle
import platform
import re
import threading
import weakref
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

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
    """The folder of stored programs, or None: no cache folder, or JAX's cache turned off
    (``jax_enable_compilation_cache``)."""
    folder = getattr(jax.config, "jax_compilation_cache_dir", None)
    if not folder or not getattr(jax.config, "jax_enable_compilation_cache", True):
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
    """Where a compiled program runs and what traced it: JAX and jaxlib, the backend and
    device, the host CPU, the XLA flags of the environment, and the versions of the
    libraries whose code runs while overgmm's programs are traced."""
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
        _versions("numpy", "scipy", "optax"),  # code that runs while a program is traced
    )


def _versions(*packages: str) -> tuple:
    from importlib import metadata

    found: list[tuple[str, str | None]] = []
    for package in packages:
        try:
            found.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            found.append((package, None))
    return tuple(found)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_PLAIN = (type(None), bool, int, float, str, tuple, enum.Enum)


def _trace_context() -> tuple:
    """JAX's settings that change a traced program (``jax._src.config.trace_context``:
    matmul precision, dtype promotion, the PRNG's partitioning, ...), those with a value
    that compares and prints by value (an axis environment outside any transformation is
    dropped)."""
    try:
        from jax._src import config as jax_config

        context = jax_config.trace_context()
    except (ImportError, AttributeError):  # pragma: no cover - another JAX layout
        return ()
    return tuple(v for v in context if isinstance(v, _PLAIN))


def key_of(name: str, static: dict, treedef, leaves, options: dict | None) -> str | None:
    """The entry's key: a digest of everything the compiled program depends on (module
    docstring); None where that text holds a memory address (an object without a
    value-based ``repr``: a freed address is reused by another object, so such a key could
    name another program)."""
    text = repr(
        (
            name,
            sorted((k, type(v).__name__, repr(v)) for k, v in static.items()),
            str(treedef),
            tuple(_aval(x) for x in leaves),
            sorted((options or {}).items()),
            _platform(),
            bool(jax.config.read("jax_enable_x64")),
            _trace_context(),
            source_digest(),
        )
    )
    if _ADDRESS.search(text):
        return None
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


def _load(blob: bytes) -> tuple:
    """(compiled program, output pytree) from a stored entry; raises if it does not load."""
    payload, n_in, out_tree = pickle.loads(zlib.decompress(blob))
    compiled = serialize_executable.deserialize_and_load(payload, _in_tree(n_in), _flat_tree(out_tree.num_leaves))
    return compiled, out_tree


class _Entry(NamedTuple):
    """A program held in this process: the compiled (or loaded) program, its output
    pytree, its key in the store and whether it was loaded from there."""

    program: Any
    out_tree: Any
    key: str
    loaded: bool


class _Programs(dict):
    """One wrapper's programs in this process: a dict that :data:`_MEMOS` holds weakly, by
    identity."""

    __eq__ = object.__eq__
    __hash__ = object.__hash__  # type: ignore[assignment]  # a dict hashed by identity


def release() -> None:
    """Drop every compiled program the wrappers of this process hold (they are loaded
    again from the cache folder when next called)."""
    with _LOCK:
        memos = list(_MEMOS)
    for memo in memos:
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
    with _LOCK:
        _MEMOS.add(memo)
    locks: dict[tuple, threading.Lock] = {}

    def build(key, store, static, treedef, leaves, load=True) -> _Entry:
        """The compiled program for ``key``: loaded from the store (unless ``load`` is
        false), else compiled (and stored where it can live in another process)."""
        blob = store.get(key)
        if blob == _NOT_STORED:
            write = False
        elif blob is None or not load:
            write = True
        elif not _custom_calls_ready():
            write = False
        else:
            try:
                program, out_tree = _load(blob)
                return _Entry(program, out_tree, key, loaded=True)
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
        return _Entry(compiled, holder[-1], key, loaded=False)

    def entry_for(args, kwargs):
        """(entry, or None for the plain jit; leaves; static; treedef; memo key; store);
        ``kwargs`` loses the static ones."""
        store = None if name is None else _store()
        static = {k: kwargs.pop(k) for k in static_argnames if k in kwargs}
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        if store is None or jax.config.jax_disable_jit or traced(leaves):
            return None, leaves, static, treedef, None, store
        # in this process: a cheap key (a digest only for the store, on a miss); static
        # arguments with their types, as jit compares them (1, 1.0 and True differ)
        local = (
            tuple(sorted((k, type(v), v) for k, v in static.items())),
            treedef,
            tuple(_aval(x) for x in leaves),
            store,
            _trace_context(),
        )
        entry = memo.get(local)
        if entry is None:
            with _LOCK:
                lock = locks.setdefault(local, threading.Lock())
            with lock:  # one compilation per key, also with the estimator's compile threads
                entry = memo.get(local)
                if entry is None:
                    key = key_of(name, static, treedef, leaves, compiler_options)
                    entry = memo[local] = _FAILED if key is None else build(key, store, static, treedef, leaves)
        return (None if entry is _FAILED else entry), leaves, static, treedef, local, store

    @functools.wraps(fn)
    def call(*args, **kwargs):
        entry, leaves, static, treedef, local, store = entry_for(args, kwargs)
        if entry is None:
            return jitted(*args, **kwargs, **static)
        try:
            out = entry.program(*leaves)
        except (TypeError, ValueError):  # a loaded program that does not take these arguments
            memo[local] = _FAILED
            return jitted(*args, **kwargs, **static)
        except Exception:
            if not entry.loaded:
                raise  # the program's own error, as jit would raise it
            # a stored program this process cannot run: compiled anew, replacing the entry
            entry = memo[local] = build(entry.key, store, static, treedef, leaves, load=False)
            out = entry.program(*leaves)
        return jax.tree_util.tree_unflatten(entry.out_tree, out)

    def precompile(*args, **kwargs) -> None:
        """Compile (or load), not run, the program of a call with these arguments (arrays
        or ``jax.ShapeDtypeStruct``), as :func:`call` will run it."""
        entry, _, static, _, _, _ = entry_for(args, kwargs)
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
