"""The ``overgmm`` command line: one module per subcommand, each with a
``register(subparsers)`` that adds its parser and sets ``func``.

``overgmm demo``: a short end-to-end run. Further subcommands (``reproduce``, ``fit``,
``predict``, ``sweep``) live beside it.
"""

from __future__ import annotations

import argparse
import sys

from overgmm.cli import demo, fit, predict, reproduce, sweep

SUBCOMMANDS = [demo, reproduce, fit, predict, sweep]


def build_parser() -> argparse.ArgumentParser:
    from overgmm import __version__

    parser = argparse.ArgumentParser(prog="overgmm", description="over-parameterized Gaussian mixtures")
    parser.add_argument("--version", action="version", version=f"overgmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
