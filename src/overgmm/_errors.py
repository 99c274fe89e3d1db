"""A bad value in data, said as where it is and what to do about it.

The readers (CSV, Parquet, chunks, the streamed checks) raise :class:`BadValue` with the
advice of a fit; a face that uses the data otherwise (``overgmm predict``) says the same
place with its own advice (:meth:`BadValue.advised`). No imports beyond the standard
library: the CSV reader uses it before JAX is loaded.
"""

from __future__ import annotations

FIT_ADVICE = "remove or impute it before fitting"


class BadValue(ValueError):
    """A value the data cannot hold. ``where``: the place and the problem (file, row,
    column, the value); ``advice``: what to do. The message is ``"{where}; {advice}"``."""

    def __init__(self, where: str, advice: str = FIT_ADVICE):
        super().__init__(f"{where}; {advice}")
        self.where, self.advice = where, advice

    def advised(self, advice: str) -> str:
        """The same place and problem with another ``advice``."""
        return f"{self.where}; {advice}"

    def __reduce__(self):  # raised on Dask workers: it must survive pickling
        return type(self), (self.where, self.advice)
