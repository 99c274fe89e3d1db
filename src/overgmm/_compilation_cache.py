"""JAX's persistent compilation cache in a user cache folder, so that a compiled loop is
paid once per machine rather than once per process.

On by default at ``import overgmm``, in ``$OVERGMM_CACHE_DIR`` or else
``$XDG_CACHE_HOME/overgmm/jax`` (``~/.cache/overgmm/jax``). Every compilation is cached
(JAX's default caches only those over one second). Turn it off with
``OVERGMM_CACHE=0`` (or ``off``/``false``/``no``) in the environment before importing
overgmm; a cache folder the user already configured (``jax_compilation_cache_dir``) is
left alone.

JAX writes an entry in place, without a lock, so two processes compiling the same loop at
once can tear an entry; local Dask workers therefore run without the cache
(``OVERGMM_CACHE=0`` in :data:`overgmm.cluster.ONE_THREAD_ENV`). (JAX's bounded cache
locks, but it lists the whole folder on every write: it doubled the test suite's time.)
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

OFF = ("0", "off", "false", "no")


def cache_dir() -> Path:
    """Where the cache lives (whether or not it is enabled)."""
    if os.environ.get("OVERGMM_CACHE_DIR"):
        return Path(os.environ["OVERGMM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "overgmm" / "jax"


def enable() -> Path | None:
    """Turn the cache on (unless ``OVERGMM_CACHE`` says off); returns the folder or None."""
    if os.environ.get("OVERGMM_CACHE", "").strip().lower() in OFF:
        return None
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable home: run without the cache
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
