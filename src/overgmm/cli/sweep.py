"""``overgmm sweep`` and ``overgmm plot``: studies at scale.

    overgmm sweep STUDY.toml --out DIR [--workers N] [--scheduler tcp://host:port] [--batch B]
    overgmm sweep W6 --out DIR         (a study shipped in overgmm/configs/: X4, Z1, W6)
    overgmm sweep status DIR
    overgmm plot DIR

Rerunning the same sweep resumes: stored runs are skipped, missing and failed ones run.
"""

from __future__ import annotations

import argparse
import json
import sys

from overgmm.cli._args import positive_int

COMMANDS = {
    "sweep": "run a study (TOML) locally or on a Dask cluster; 'sweep status DIR'",
    "plot": "draw a stored study's figure",
}


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help=COMMANDS["sweep"],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", help="a study file, a shipped study's name (X4, Z1, W6), or the word 'status'")
    p.add_argument("dir", nargs="?", help="with 'status': the output folder of a sweep")
    p.add_argument("--out", help="output folder (default results/sweeps/<study file name>)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="local worker processes (default 1: in this process; N > 1: a local Dask cluster)",
    )
    p.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://host:8786 (default: none)")
    p.add_argument("--batch", type=positive_int, default=32, help="runs per compiled vmap call (default 32)")
    p.set_defaults(func=_sweep, parser=p)
    q = sub.add_parser("plot", help=COMMANDS["plot"])
    q.add_argument("dir", help="the output folder of a sweep")
    q.set_defaults(func=_plot)


def _sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from overgmm import sweep

    if args.target == "status":
        if not args.dir:
            args.parser.error("usage: overgmm sweep status DIR")
        try:
            s = sweep.status(args.dir)
        except sweep.StudyError as err:
            print(f"overgmm: {args.dir} is not a sweep folder: {err}", file=sys.stderr)
            return 2
        print(json.dumps(s))
        fails = sweep.load_failures(args.dir)
        for _, r in fails.iterrows():
            print(f"failed {r['run_id']}: {r['error']}")
        return 0
    if args.scheduler and args.workers > 1:
        args.parser.error("--workers starts a local cluster; with --scheduler the cluster's workers are used")
    from overgmm.cli._data import CommandError, check_out

    out = Path(args.out) if args.out else Path("results") / "sweeps" / Path(args.target).stem
    try:
        check_out(out)  # a file in the way: one line, not a traceback
    except CommandError as err:
        print(f"overgmm: {err}", file=sys.stderr)
        return 2
    try:
        counts = sweep.sweep(args.target, out, workers=args.workers, scheduler=args.scheduler, batch=args.batch)
    except (sweep.StudyError, ConnectionError) as err:  # a bad study, or a scheduler out of reach
        print(f"overgmm: {err}", file=sys.stderr)
        return 2
    print(json.dumps(counts) + f"  ({out})")
    if counts["failed"]:
        print(f"{counts['failed']} run(s) failed: `overgmm sweep status {out}` lists them", file=sys.stderr)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from overgmm.sweep.plots import plot, summarize

    try:
        path = plot(args.dir)
        _, head = summarize(args.dir)
    except (ValueError, OSError) as err:  # StudyError is a ValueError
        print(f"overgmm: cannot plot {args.dir}: {err}", file=sys.stderr)
        return 2
    print(f"{json.dumps(head)}\nwrote {path}")
    return 0
