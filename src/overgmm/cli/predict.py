"""``overgmm predict MODEL DATA [--out labels.csv]``: label new data with a model that
``overgmm fit`` (or ``OverparamGMM.save``) wrote.

The data is read as ``overgmm fit`` reads it (CSV, ``.npy``, Parquet; streamed when large).
When the model and the data both name their columns, the model's columns are taken by
name (in any order; a missing one is an error); otherwise the data must have as many
columns as the model. The output CSV has one line per data row: ``row`` (from 1),
``label`` (the most probable component, from 0), ``log_density`` and ``p_0 .. p_{k-1}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from overgmm._errors import BadValue
from overgmm.cli._data import CommandError, add_header_options, command


def _columns(model_names, path: Path, args, source, names, gaps: bool = False):
    """The model's columns in the data: a re-read source when both name their columns."""
    from overgmm.cli import _data

    defaults = _data.default_names
    if model_names is None or model_names == defaults(len(model_names)) or names == defaults(len(names)):
        return source, names
    if names == list(model_names):
        return source, names
    missing = [c for c in model_names if c not in names]
    if missing:
        raise CommandError(f"{path}: no column named {missing[0]!r}, which the model was fitted on; it has {names}")
    return _data.read(
        str(path), columns=list(model_names), header=args.header, memory_budget=args.memory_budget, missing=gaps
    )


LABEL_ADVICE = "remove or impute it before labelling (a model fitted with --allow-missing labels rows with gaps)"


def _for_labelling(err: Exception) -> CommandError:
    """A bad value's message as ``predict`` says it: the readers' advice
    (:class:`overgmm._errors.BadValue`, raised or the cause of a :class:`CommandError`)
    is about fitting, and ``--allow-missing`` is an option of ``fit``; here the model
    decides. Any other error as it is."""
    bad = err if isinstance(err, BadValue) else err.__cause__
    if isinstance(bad, BadValue):
        return CommandError(bad.advised(LABEL_ADVICE))
    return err if isinstance(err, CommandError) else CommandError(str(err))


def _run(args: argparse.Namespace) -> int:
    from overgmm.cli import _data
    from overgmm.estimator import OverparamGMM, _persist

    out = Path(args.out)
    if out.is_dir():
        raise CommandError(f"--out {out}: a folder; give a file name such as labels.csv")
    _data.check_out(out.parent if str(out.parent) else Path("."))
    try:
        obj = _persist.read(args.model)
        est = _persist.from_dict(OverparamGMM, obj, args.model)
        model_names = obj.get("features")
    except (OSError, ValueError) as err:
        raise CommandError(str(err)) from None
    gaps = bool(est.allow_missing)  # a model fitted with missing values labels rows with gaps
    try:
        source, names = _data.read(
            args.data, columns=None, header=args.header, memory_budget=args.memory_budget, missing=gaps
        )
        source, names = _columns(model_names, Path(args.data), args, source, names, gaps)
    except CommandError as err:
        raise _for_labelling(err) from None
    if source.n_features != est.n_features_in_:
        raise CommandError(
            f"{args.data}: {source.n_features} columns, but the model was fitted on {est.n_features_in_}"
        )
    X = _data.in_memory(source, args.memory_budget)

    def check(x, start=0):  # every value, in memory or a chunk at a time, before it is labelled
        _data.check_finite(x, source, args.data, names, missing=gaps, start=start)

    try:
        if X is not None:
            check(X)
        _data.write_together({out: lambda p: _data.write_rows(est, source, X, p, check if X is None else None)})
    except OSError as err:
        print(f"overgmm predict: error: cannot write {out} ({err})", file=sys.stderr)
        return 1
    except (CommandError, ValueError) as err:  # a bad value, in memory or in streamed data
        raise _for_labelling(err) from None
    print(f"labelled {source.n_rows} rows with {est.n_components_} components ({est.covariance_type_}); wrote {out}")
    return 0


COMMANDS = {"predict": "label a CSV, .npy or Parquet file with a fitted model (model.json)"}


def register(sub) -> None:
    from overgmm.cli.fit import _bytes
    from overgmm.estimator import OverparamGMM

    p = sub.add_parser(
        "predict",
        help=COMMANDS["predict"],
        description="Write each row's component (label), log-density and component probabilities.",
    )
    p.add_argument("model", help="the model file that overgmm fit wrote (model.json)")
    p.add_argument("data", help="CSV, .npy or Parquet, with the columns the model was fitted on")
    p.add_argument("--out", default="labels.csv", help="output CSV file (default %(default)s)")
    add_header_options(p)
    p.add_argument(
        "--memory-budget",
        type=_bytes,
        default=OverparamGMM().get_params()["memory_budget"],
        help="bytes the data may take in memory; larger data is read in chunks (default %(default)s)",
    )
    p.set_defaults(func=command("predict", _run))
