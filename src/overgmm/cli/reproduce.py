"""``overgmm reproduce``: run the papers' experiments.

    overgmm reproduce --list
    overgmm reproduce NAME [--quick] [--out DIR] [--seed S] [--backend quadrature|monte-carlo]
    overgmm reproduce --all [--quick] [--out DIR]      (one folder per experiment under DIR)
    overgmm reproduce NAME --replot --out DIR          (claims and figures from DIR's tables)

Exit status: 0 when every run finished (whatever its claims say: a claim that does
not hold is a finding, shown in the table), 1 when a run raised, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from overgmm.cli._data import check_out, command

COMMANDS = {"reproduce": "run an experiment of the papers (figure, tables, claims)"}


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help=COMMANDS["reproduce"],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", nargs="?", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments")
    p.add_argument("--all", action="store_true", help="run every experiment")
    p.add_argument("--quick", action="store_true", help="the small variant (seconds to a minute)")
    p.add_argument("--out", help="output folder (default results/NAME; with --all, DIR/NAME)")
    p.add_argument("--seed", type=int, help="seed (default: the config's, 0)")
    p.add_argument(
        "--backend", choices=("quadrature", "monte-carlo"), help="population expectations (default quadrature)"
    )
    p.add_argument("--replot", action="store_true", help="redo claims and figures from the tables in --out")
    p.add_argument("--skip-multi-trial", action="store_true", help="with --all: skip X4, Z1, W6")
    p.set_defaults(func=command("reproduce", _main), parser=p)


def _main(args: argparse.Namespace) -> int:
    from overgmm import experiments
    from overgmm.experiments.runner import format_claims, replot, reproduce

    reg = experiments.registry()
    if args.list:
        for exp in reg.values():
            print(f"{exp.name:4s} {exp.paper}\n     {exp.description}")
        return 0
    if args.all == bool(args.name):
        args.parser.error("give one experiment NAME, or --all, or --list")
    try:
        names = list(reg) if args.all else [experiments.get(args.name).name]
    except ValueError as err:
        args.parser.error(str(err))
    if args.all and args.skip_multi_trial:
        names = [n for n in names if not reg[n].multi_trial]
    base = Path(args.out) if args.out else Path("results")
    if not args.replot:
        check_out(base)  # before any work: a file in the way is a usage error, not a failed run
    failed, times = [], {}
    for name in names:
        exp = reg[name]
        out = base / name if (args.all or not args.out) else base
        print(f"== {name}: {exp.description} ({exp.paper})", flush=True)
        t0 = time.perf_counter()
        if args.replot and not (out / "config.json").is_file():
            print(f"overgmm: {name}: nothing to replot in {out} (no config.json; run it first)", file=sys.stderr)
            failed.append(name)
            continue
        try:
            if args.replot:
                summary = replot(exp, out)
            else:
                summary = reproduce(exp, quick=args.quick, out=out, seed=args.seed, backend=args.backend)
        except Exception as err:  # report, keep going with --all
            print(f"overgmm: {name} failed: {type(err).__name__}: {err}", file=sys.stderr)
            if not args.replot:
                print(f"   what was computed before the failure is in {out}", file=sys.stderr)
            failed.append(name)
            continue
        times[name] = time.perf_counter() - t0
        print(format_claims(summary))
        files = ", ".join(summary["figures"] + summary["tables"] + ["config.json", "summary.json"])
        print(f"   {times[name]:.0f} s; wrote {out}/: {files}\n", flush=True)
    if len(names) > 1:
        print(
            "times: " + ", ".join(f"{n} {t:.0f} s" for n, t in times.items()) + f"; total {sum(times.values()):.0f} s"
        )
    if failed:
        print(f"overgmm: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
