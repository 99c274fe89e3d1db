"""Argument types shared by the subcommands (argparse turns their errors into a
usage message and exit status 2)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def column_names(text: str) -> list[str]:
    """``a,b,c``: column names, none empty (a name given twice is the readers' error)."""
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r} (an empty name)")
    return names
