"""JAX's persistent compilation cache in a user cache folder, so that a compiled loop is
paid once per machine rather than once per process: **opt-in**.

``OVERGMM_CACHE=1`` (or ``on``/``true``/``yes``) in the environment before importing
overgmm turns it on, in ``$OVERGMM_CACHE_DIR`` or else ``$XDG_CACHE_HOME/overgmm/jax``
(``~/.cache/overgmm/jax``); every compilation is then cached (JAX's default caches only
those over one second). A cache folder the user already configured
(``jax_compilation_cache_dir``) is left alone.

Why opt-in: with it on by default, two full runs of the test suite died with a
segmentation fault inside JAX's own cache code, one serializing an executable
(``put_executable_and_time``) and one deserializing one (``get_executable_and_time``),
both in a long-lived process after thousands of compilations (a sweep run in the test
process); the same tests alone passed. JAX also writes entries in place, without a lock,
so local Dask workers never use it (``OVERGMM_CACHE=0`` in
:data:`overgmm.cluster.ONE_THREAD_ENV`). With the cache, a first fit in a new process
took 2.1 s instead of 7.6 s on iris (README).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ON = ("1", "on", "true", "yes")


def cache_dir() -> Path:
    """Where the cache lives (whether or not it is enabled)."""
    if os.environ.get("OVERGMM_CACHE_DIR"):
        return Path(os.environ["OVERGMM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "overgmm" / "jax"


def enable() -> Path | None:
    """Turn the cache on when ``OVERGMM_CACHE`` says so; returns the folder or None."""
    if os.environ.get("OVERGMM_CACHE", "").strip().lower() not in ON:
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
