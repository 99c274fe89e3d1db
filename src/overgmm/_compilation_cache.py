"""JAX's persistent compilation cache in a user cache folder, so that a compiled loop is
paid once per machine rather than once per process.

On by default at ``import overgmm``, in ``$OVERGMM_CACHE_DIR`` or else
``$XDG_CACHE_HOME/overgmm/jax`` (``~/.cache/overgmm/jax``). Every compilation is cached
(JAX's default caches only those over one second). Turn it off with
``OVERGMM_CACHE=0`` (or ``off``/``false``/``no``) in the environment before importing
overgmm; a cache folder the user already configured (``jax_compilation_cache_dir``) is
left alone.

Safe under concurrency. JAX's own file cache writes an entry in place, without a lock, so
a process that reads an entry while another writes it can load a torn executable (seen
here: a crash inside ``get_executable_and_time``). overgmm installs an :class:`AtomicFileCache`
in its place: an entry is written to a private temporary file and renamed into place
(``os.replace``, atomic on POSIX and Windows), so a reader sees a whole entry or none; each
entry carries its length and a BLAKE2b digest, and one that does not match (a file from
elsewhere, a disk that filled up) is a cache miss, never a crash. Several processes (the
test suite's workers, Dask workers, users' scripts) can share one folder from empty.

The cache installed (:class:`JaxCache`) can be skipped by one thread's compilations
(:func:`fresh_compilation`): the programs :mod:`overgmm._executables` stores whole in the
same folder must be compiled, not loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import jax

OFF = ("0", "off", "false", "no")
MAGIC = b"OGMC1\n"  # entry format: MAGIC, 8-byte length, 32-byte digest, payload
_HEADER = len(MAGIC) + 8 + 32


def cache_dir() -> Path:
    """Where the cache lives (whether or not it is enabled)."""
    if os.environ.get("OVERGMM_CACHE_DIR"):
        return Path(os.environ["OVERGMM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "overgmm" / "jax"


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=32).digest()


def pack(payload: bytes) -> bytes:
    """An entry as stored: header (magic, length, digest) and ``payload``."""
    return MAGIC + len(payload).to_bytes(8, "little") + _digest(payload) + payload


def unpack(blob: bytes) -> bytes | None:
    """The payload of a stored entry, or None if it is not a whole, intact entry."""
    if len(blob) < _HEADER or not blob.startswith(MAGIC):
        return None
    size = int.from_bytes(blob[len(MAGIC) : len(MAGIC) + 8], "little")
    payload = blob[_HEADER:]
    if len(payload) != size or _digest(payload) != blob[len(MAGIC) + 8 : _HEADER]:
        return None
    return payload


class AtomicFileCache:
    """A folder of entries (``<key>-ogc``), each written whole by rename and checked on read.

    Implements JAX's cache interface (``get``, ``put``, ``_path``)."""

    SUFFIX = "-ogc"

    def __init__(self, path: str | Path):
        self._path = Path(path)
        self._path.mkdir(parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        if not key:
            raise ValueError("key cannot be empty")
        return self._path / f"{key}{self.SUFFIX}"

    def get(self, key: str) -> bytes | None:
        try:
            blob = self._file(key).read_bytes()
        except OSError:
            return None
        return unpack(blob)

    def put(self, key: str, value: bytes, replace: bool = False) -> None:
        """Store ``value`` under ``key``; an intact entry already there is kept, unless
        ``replace`` (a stored value its reader could not use)."""
        target = self._file(key)
        if not replace and target.exists() and self.get(key) is not None:
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=self._path, prefix=".tmp-")
        except OSError:
            return  # a full or read-only folder: run on without caching
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pack(value))
            os.replace(tmp, target)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


_THREAD = threading.local()


class JaxCache(AtomicFileCache):
    """The :class:`AtomicFileCache` installed as JAX's persistent cache: skipped by the
    compilations of a thread inside :func:`fresh_compilation`."""

    def get(self, key: str) -> bytes | None:
        return None if getattr(_THREAD, "fresh", False) else super().get(key)

    def put(self, key: str, value: bytes, replace: bool = False) -> None:
        if not getattr(_THREAD, "fresh", False):
            super().put(key, value, replace)


@contextlib.contextmanager
def fresh_compilation() -> Iterator[bool]:
    """Within it, this thread's compilations neither read nor write JAX's persistent cache:
    every executable is compiled, none loaded. An executable that JAX loaded from its cache
    does not serialize whole (XLA:CPU keeps no object code for it: loaded again, it fails
    with "Function ... not found"), so :mod:`overgmm._executables` stores only programs
    compiled here. Yields whether that holds: False where JAX's cache is not overgmm's
    (a folder the user configured, or JAX's internals moved)."""
    try:
        from jax._src import compilation_cache as cc
        from jax._src import config as jax_config

        ours = isinstance(cc._cache, JaxCache)
        # this thread only: JAX does not even serialize the executable for its cache
        unwritten = jax_config.persistent_cache_min_compile_time_secs(float("inf"))
    except (ImportError, AttributeError):  # pragma: no cover - another JAX layout
        ours = False
    if not ours:
        yield False
        return
    outer = getattr(_THREAD, "fresh", False)
    _THREAD.fresh = True
    try:
        with unwritten:
            yield True
    finally:
        _THREAD.fresh = outer


def _install(path: Path) -> bool:
    """Make :class:`JaxCache` JAX's persistent cache (JAX internals; False if they moved)."""
    try:
        from jax._src import compilation_cache as cc

        with cc._cache_initialized_mutex:
            cc._cache = JaxCache(path)  # type: ignore[assignment]  # duck-typed CacheInterface
            cc._cache_initialized = True
    except (ImportError, AttributeError):  # pragma: no cover - another JAX layout
        return False
    return True


def enable() -> Path | None:
    """Turn the cache on (unless ``OVERGMM_CACHE`` says off); returns the folder or None."""
    if os.environ.get("OVERGMM_CACHE", "").strip().lower() in OFF:
        return None
    configured = getattr(jax.config, "jax_compilation_cache_dir", None)
    if configured:
        return Path(configured)
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable home: run without the cache
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _install(path)  # where JAX's internals moved, JAX's own (in-place) cache stays
    return path
