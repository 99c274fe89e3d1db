"""The ``overgmm`` command line: one module per subcommand, each with a ``COMMANDS`` table
(the command names it adds, with their one-line help) and a ``register(subparsers)`` that
adds their parsers and sets ``func``.

``overgmm demo``: a short end-to-end run. Further subcommands (``reproduce``, ``fit``,
``predict``, ``sweep``, ``plot``) live beside it.

Only the module of the command being run registers its arguments; the others appear by
name and help. ``fit`` and ``predict`` read the estimator's defaults, which imports
scikit-learn (about 1 s), so ``overgmm --help``, ``--version``, ``reproduce`` and ``sweep``
start without it.
"""

from __future__ import annotations

import argparse
import sys

from overgmm.cli import demo, fit, predict, reproduce, sweep

SUBCOMMANDS = [demo, reproduce, fit, predict, sweep]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``overgmm``: every subcommand's arguments (``command`` None), or only
    those of the module that adds ``command`` (the rest by name and help)."""
    from overgmm import __version__

    parser = argparse.ArgumentParser(prog="overgmm", description="over-parameterized Gaussian mixtures")
    parser.add_argument("--version", action="version", version=f"overgmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        if command is None or command in module.COMMANDS:
            module.register(sub)
        else:
            for name, text in module.COMMANDS.items():
                sub.add_parser(name, help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the command is the first word that is not an option (overgmm's own options take no value)
    command = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(command).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
