"""The fit's progress bar (``verbose >= 1``): one bar for the whole fit, every segment
(each ``"auto"`` candidate, the main fit, each polishing fit after merges) adding its
steps, with the mean log-likelihood per sample in the units of the data.

A segment's total is its ``max_iter`` while it runs (so the ETA is an upper bound) and
the steps it took once it ends, so the bar ends at the real step count. On data in
chunks the bar moves with every pass; in memory, where a segment is one compiled loop,
it moves when the segment ends. It appears once the fit has run for :data:`DELAY`
seconds, and a clock thread keeps its elapsed time moving while code compiles.
"""

from __future__ import annotations

import threading
import time

DELAY = 1.0  # seconds before the bar appears
TICK = 0.5  # seconds between refreshes while nothing else moves it
MIN_INTERVAL = 0.2  # seconds between two refreshes, except the last


class Progress:
    """A tqdm bar over a fit; every method is a no-op when ``on`` is false."""

    def __init__(self, on: bool, desc: str = "fit"):
        self.bar = None
        if not on:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(total=0, desc=desc, unit="step", delay=DELAY, dynamic_ncols=True)
        self._t0 = time.monotonic()
        self._start, self._log_scale, self._last = 0, 0.0, 0.0
        self._stop = threading.Event()
        self._clock = threading.Thread(target=self._tick, daemon=True)
        self._clock.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            self._show()

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.bar is not None and now - self._t0 >= DELAY and (force or now - self._last >= MIN_INTERVAL):
            self._last = now
            self.bar.refresh()

    def stage(self, name: str, log_scale: float) -> None:
        """The fits that follow are ``name``; ``log_scale``: the sum of the log feature
        scales, which turns a standardized log-likelihood into the data's units."""
        if self.bar is None:
            return
        self._log_scale = float(log_scale)
        self.bar.set_description(name, refresh=False)
        self._show()

    def begin(self, max_steps: int) -> None:
        """A segment of at most ``max_steps`` steps."""
        if self.bar is None:
            return
        self._start = self.bar.n
        self.bar.total = self.bar.n + int(max_steps)
        self._show()

    def step(self, loss: float) -> None:
        """One step (a pass over chunks) with mean NLL ``loss`` (standardized units)."""
        if self.bar is None:
            return
        self.bar.n += 1
        self._postfix(loss)

    def end(self, steps: int, loss: float) -> None:
        """The segment took ``steps`` steps and ended at mean NLL ``loss`` (standardized)."""
        if self.bar is None:
            return
        self.bar.n = self._start + int(steps)
        self.bar.total = self.bar.n
        self._postfix(loss)

    def _postfix(self, loss: float) -> None:
        assert self.bar is not None
        self.bar.set_postfix_str(f"log-likelihood/sample {-float(loss) - self._log_scale:.6g}", refresh=False)
        self._show()

    def close(self) -> None:
        if self.bar is None:
            return
        self._stop.set()
        self._clock.join()
        self._show(force=True)
        self.bar.close()
        self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
