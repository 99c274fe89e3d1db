"""Compiled programs released before the process runs out of memory mappings.

Every XLA:CPU executable a process keeps holds memory mappings, and JAX keeps every
program it compiled. A process that fits data of many shapes (a benchmark over data
sets, a user's loop, a test worker) gains about 7000 mappings per new data shape with
the default fit, and XLA aborts, a native crash, once the process reaches the kernel's
limit (``vm.max_map_count``, 65530 by default): measured, a benchmark over ten data sets
died on the eighth. :func:`release_if_crowded`, called as a fit begins and whenever the
driver fetches a compiled loop (counted at most every :data:`EVERY` seconds), drops
JAX's in-memory caches (and the loops registered with :func:`on_release`)
once the process holds more than half the limit; the programs are compiled again when
next needed, or read from the persistent compilation cache
(:mod:`overgmm._compilation_cache`). Linux only (elsewhere nothing is counted)."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax

SHARE = 0.5  # release past this share of the kernel's limit
EVERY = 5.0  # seconds between two counts (a count reads /proc/self/maps)
_HOOKS: list[Callable[[], None]] = []
_last = [float("-inf")]


def on_release(hook: Callable[[], None]) -> None:
    """Call ``hook`` (no arguments) whenever compiled programs are released."""
    _HOOKS.append(hook)


def map_count() -> tuple[int, int] | None:
    """(memory mappings of this process, the kernel's limit), or None where they cannot be read."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            count = sum(1 for _ in maps)
        with open("/proc/sys/vm/max_map_count") as limit:
            return count, int(limit.read())
    except (OSError, ValueError):
        return None


def release_if_crowded(share: float = SHARE, every: float = EVERY) -> bool:
    """Drop the in-memory compiled programs when this process holds more than ``share`` of
    the kernel's limit on memory mappings; counted at most once per ``every`` seconds.
    Returns whether they were dropped."""
    now = time.monotonic()
    if now - _last[0] < every:
        return False
    _last[0] = now
    counted = map_count()
    if counted is None or counted[0] <= share * counted[1]:
        return False
    release()
    return True


def release() -> None:
    """Drop every compiled program this process holds now: JAX's in-memory caches and the
    ones registered with :func:`on_release`."""
    for hook in _HOOKS:
        hook()
    jax.clear_caches()
