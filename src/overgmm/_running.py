"""One compiled program at a time from worker threads (:data:`LOCK`).

XLA:CPU runs a compiled program on its client's thread pool (as many threads as cores),
and a larger program (full covariances from d = 10: the merge costs, the E-step) waits
there for tasks queued on the same pool. Programs started from several threads at once (a
dask array's chunks under Dask's threaded scheduler, a Dask worker with several threads)
held every pool thread waiting, and the fit hung for good (twenty-third session: both
threads of this 2-core machine in ``CpuPjRtRawLoadedExecutable::Execute``, blocked until
ready). Code that threads run holds :data:`LOCK` around its compiled work: a chunk's
function (:mod:`overgmm.chunks`), a block of lazy inference on a dask array, a chunk of
sweep runs on a Dask worker. Reading data stays outside it, and XLA still spreads each
program over the cores. Not re-entrant: what holds it never waits for other tasks.
"""

from __future__ import annotations

import threading

LOCK = threading.Lock()
