"""``overgmm fit DATA [--out DIR] [options]``: fit an :class:`~overgmm.OverparamGMM` to a
CSV file (numeric columns; a header row is detected, or said with ``--header`` /
``--no-header``), a ``.npy`` file (memory-mapped) or Parquet (a file or a folder), streamed
in chunks when the data exceed ``--memory-budget`` (Parquet always), on a Dask cluster with
``--scheduler`` or ``--workers``. Every option's default is the estimator's, read from it.

It writes, all or nothing (each file to a temporary name, renamed once all are written):

* ``model.json``: strict JSON, the estimator's model file (``OverparamGMM.load`` reads it
  back; :mod:`overgmm.estimator._persist`) plus the data's column names, row count, BIC,
  AIC and the time;
* ``components.png``: the data with the fitted components (:mod:`._figure`);
* ``labels.csv`` with ``--labels``: each training row's component and probabilities.

It prints the covariance type (with ``auto``'s held-out scores), the component count, the
log-likelihood, BIC, AIC and parameter count. Bad input exits with status 2 and one line
naming the file, row and column (from 1); nothing is written.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from overgmm.cli._args import column_names, positive_int
from overgmm.cli._data import CommandError, add_header_options, command

# options that set an estimator parameter of another name
PARAM_OF_OPTION = {"seed": "random_state"}
AUTO_HELP = (
    "auto: hold out about one row in five (chosen by the rows' values), fit spherical, diag, tied, full and rotated "
    "(on the full fit's axes; in one feature spherical and tied alone) on the rest; of the types whose held-out "
    "log-likelihood is within 0.02 nats/sample of the best (or half a standard error of the per-row difference, "
    "when that is more), keep the fit with the fewest free parameters (the simplest type, in that order, among "
    "equals), and refit it on all rows"
)


def _n_components(text: str):
    return text if text == "auto" else positive_int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _bytes(text: str) -> float:
    """``2e9``, ``2GB``, ``512MiB``, ... -> bytes."""
    units = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    t = text.strip().upper()
    num = t.rstrip("KMGTIB")
    try:
        value = float(num) * units[t[len(num) :]]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a size such as 2e9, 2GB or 512MiB, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def estimator_params(args: argparse.Namespace) -> dict:
    """The estimator's parameters from the parsed options."""
    from overgmm.estimator import OverparamGMM

    params: dict[str, object] = {}
    for name in OverparamGMM().get_params():
        if name == "standardize":
            params[name] = not args.no_standardize
        elif name == "rounding_floor":
            params[name] = not args.no_rounding_floor
        elif name == "verbose":
            params[name] = 0 if args.quiet else 1
        else:
            option = next((o for o, p in PARAM_OF_OPTION.items() if p == name), name)
            params[name] = getattr(args, option)
    return params


def _warnings(caught, path: str, names: list[str]) -> None:
    from overgmm.estimator._checks import ConstantFeatureWarning

    for w in caught:
        msg = w.message
        if isinstance(msg, ConstantFeatureWarning):
            j = msg.feature
            print(f"warning: {path}: column {j + 1} ({names[j]!r}) {msg.detail}", file=sys.stderr)
        else:
            print(f"warning: {msg}", file=sys.stderr)


def _fit_data(args, source, names, X):
    """The estimator fitted on ``X`` (in memory) or on the source (streamed)."""
    import warnings

    import numpy as np

    from overgmm import chunks as C
    from overgmm._validation import NonFiniteValue
    from overgmm.cluster import connect
    from overgmm.estimator import OverparamGMM
    from overgmm.estimator._checks import FeatureOverflowError, FeatureUnderflowError

    est = OverparamGMM(**estimator_params(args))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with connect(args.scheduler, args.workers) as client:
                if client is not None:
                    est.fit(C.to_dask(source))
                else:
                    est.fit(X if X is not None else source)
        except NonFiniteValue as err:
            from overgmm.cli._data import where

            raise CommandError(
                f"{where(source, args.data, err.row, err.column, names)} is {err.value}, not finite; {err.advice}"
            ) from None
        except FeatureOverflowError as err:
            j = err.feature
            at = ""
            if X is not None and not isinstance(err, FeatureUnderflowError):
                r = int(np.argmax(np.abs(X[:, j])))
                at = f" (the largest, {X[r, j]:g}, is in row {r + 1})"
            raise CommandError(f"{args.data}: column {j + 1} ({names[j]!r}) {err.detail}{at}") from None
        except (OSError, ValueError, FloatingPointError) as err:
            raise CommandError(str(err)) from None
    _warnings(caught, args.data, names)
    return est


def _report(est, n_rows: int) -> dict:
    """BIC, AIC and the parameter count on the training rows (all of weight 1)."""
    p = int(est._n_parameters())
    total_ll = float(est.lower_bound_) * n_rows
    return {
        "n_samples": n_rows,
        "log_likelihood": total_ll,
        "bic": -2 * total_ll + p * math.log(n_rows),
        "aic": -2 * total_ll + 2 * p,
        "n_parameters": p,
    }


def _run(args: argparse.Namespace) -> int:
    from overgmm import streaming
    from overgmm.cli import _data
    from overgmm.cli._figure import figure
    from overgmm.estimator import _persist

    out = Path(args.out)
    _data.check_out(out)
    source, names = _data.read(
        args.data,
        columns=args.columns,
        header=args.header,
        memory_budget=args.memory_budget,
        missing=args.allow_missing,
    )
    X = _data.in_memory(source, args.memory_budget)
    if X is not None:
        _data.check_finite(X, source, args.data, names, missing=args.allow_missing)
    t0 = time.perf_counter()
    est = _fit_data(args, source, names, X)
    secs = time.perf_counter() - t0
    if not math.isfinite(est.lower_bound_):
        raise CommandError(f"the fit's log-likelihood is {est.lower_bound_}; nothing was written")
    try:
        model = _persist.to_dict(est)
    except ValueError as err:
        raise CommandError(f"{err}; nothing was written") from None
    report = _report(est, source.n_rows)
    model.update(report, features=names, seconds=round(secs, 3))
    model["data"] = {"path": str(args.data), "streamed": X is None}
    text = _persist.dumps(model)
    from overgmm.chunks import ArrayChunks

    shown, _ = streaming.subsample(ArrayChunks(X) if X is not None else source, streaming.ALL, source.n_rows, 5000)
    files = {
        out / "model.json": lambda p: p.write_text(text),
        out / "components.png": lambda p: figure(est, shown, names, p),
    }
    if args.labels:
        files[out / "labels.csv"] = lambda p: _data.write_rows(est, source, X, p)
    try:
        _data.write_together(files)
    except OSError as err:
        print(f"overgmm fit: error: cannot write to {out} ({err}); no file was changed", file=sys.stderr)
        return 1
    _print_summary(est, report, secs, files)
    return 0


def _print_summary(est, report: dict, secs: float, files) -> None:
    kind = est.covariance_type_
    if est.validation_scores_:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in est.validation_scores_.items())
        print(f"covariance type: {kind} (auto; held-out log-likelihood per sample: {scores})")
    else:
        print(f"covariance type: {kind}")
    pruned = est.n_components_init_ - est.n_components_ - est.n_merges_
    print(
        f"components: {est.n_components_} (started from {est.n_components_init_}; "
        f"{est.n_merges_} merged, {pruned} pruned)"
    )
    print(
        f"mean log-likelihood per sample: {est.lower_bound_:.4f}; BIC {report['bic']:.2f}, AIC {report['aic']:.2f}, "
        f"{report['n_parameters']} parameters; {est.n_iter_} steps, {secs:.2f} s"
    )
    print("wrote " + ", ".join(str(p) for p in files))


COMMANDS = {"fit": "fit an over-parameterized mixture to a CSV, .npy or Parquet file and report its component count"}


def register(sub) -> None:
    from overgmm.estimator import OverparamGMM
    from overgmm.estimator._fit import ALGORITHMS, COVARIANCE_TYPES, INITS

    d = OverparamGMM().get_params()
    p = sub.add_parser(
        "fit",
        help=COMMANDS["fit"],
        description="Fit OverparamGMM (defaults: the estimator's) and write model.json, components.png and, "
        "with --labels, labels.csv to --out.",
    )
    p.add_argument(
        "data",
        help="CSV (numeric columns, header row detected), .npy (memory-mapped) or Parquet (a file or a folder "
        "of them, read one row group at a time)",
    )
    p.add_argument("--out", default="results/fit", help="output folder, checked before the fit (default %(default)s)")
    p.add_argument(
        "--n-components",
        type=_n_components,
        default=d["n_components"],
        help="components to start from: an int, or auto (one per 10 rows, at most 25; full covariances at "
        "most one per (d + 1) / 2 rows) (default %(default)s)",
    )
    p.add_argument(
        "--covariance-type",
        choices=[*COVARIANCE_TYPES, "auto"],
        default=d["covariance_type"],
        help="full, tied (one covariance shared by all components), rotated (diagonal in the common axes of a full "
        "fit), diag, spherical, fixed (identity after standardization), or " + AUTO_HELP + " "
        "(default %(default)s)",
    )
    p.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default=d["algorithm"],
        help="em; gradient_em (a gradient step of size --step-size on means and variances); polyak (short "
        "steps, then a long Polyak step; data in memory only) (default %(default)s)",
    )
    p.add_argument(
        "--step-size",
        type=_positive_float,
        default=d["step_size"],
        help="step of gradient_em and of polyak's short steps (default %(default)s)",
    )
    p.add_argument(
        "--n-short", type=positive_int, default=d["n_short"], help="short steps per Polyak cycle (default %(default)s)"
    )
    p.add_argument(
        "--max-iter",
        type=positive_int,
        default=d["max_iter"],
        help="most steps per fit and per polishing fit after merges (default %(default)s)",
    )
    p.add_argument(
        "--tol",
        type=_non_negative_float,
        default=d["tol"],
        help="stop when the mean log-likelihood per sample changes by less (default %(default)s)",
    )
    p.add_argument(
        "--init",
        choices=INITS,
        default=d["init"],
        help="starting means: data rows drawn by weight, or kmeans++ seeding (default %(default)s)",
    )
    p.add_argument(
        "--prune",
        type=_non_negative_float,
        default=d["prune"],
        help="components whose weight falls below this are removed (default %(default)s)",
    )
    p.add_argument(
        "--merge-tol",
        type=_non_negative_float,
        default=d["merge_tol"],
        help="merge a pair when it costs less than this times the BIC price of a component; 0 disables merging "
        "(default %(default)s)",
    )
    p.add_argument(
        "--n-init", type=positive_int, default=d["n_init"], help="restarts, run together (default %(default)s)"
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="read empty cells, NA and nan as missing values and fit exact EM on the observed values "
        "(no imputation; in memory or streamed: a Parquet file's null cells are missing too); predict then labels "
        "rows with gaps (default: an empty cell is an error)",
    )
    p.add_argument(
        "--var-floor",
        type=_non_negative_float,
        default=d["var_floor"],
        help="variance floor relative to each feature's variance (default %(default)s)",
    )
    p.add_argument(
        "--no-rounding-floor",
        action="store_true",
        default=not d["rounding_floor"],
        help="do not floor the variance of a feature recorded on a grid (integers, fixed decimals) at "
        "step^2 / 12 (default: floor it)",
    )
    p.add_argument(
        "--no-standardize",
        action="store_true",
        default=not d["standardize"],
        help="fit in the units of the data (default: standardize each feature)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d["random_state"],
        help="seed of the initialisation (default %(default)s: a different draw each run)",
    )
    p.add_argument(
        "--columns",
        type=column_names,
        default=None,
        help="comma-separated columns to use, by name (the CSV header's or the Parquet schema's) (default: all)",
    )
    add_header_options(p)
    p.add_argument(
        "--memory-budget",
        type=_bytes,
        default=d["memory_budget"],
        help="bytes the data may take in memory; larger .npy data and all Parquet data are streamed in chunks "
        "(exact EM, one pass per step) (default %(default)s)",
    )
    p.add_argument(
        "--labels", action="store_true", help="also write labels.csv: each row's component and probabilities"
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address (tcp://host:port): fit on that cluster (default: none, fit here)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="fit on a local Dask cluster of N processes when N > 1 (default %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on stderr after 1 s)")
    p.set_defaults(func=command("fit", _run))
