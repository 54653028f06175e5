"""Printing for commands whose output a reader may cut short (``lmseg segment --help | head``), with the standard
library only: the ``lmseg`` command and the benchmark scripts print their help through it."""

from __future__ import annotations

import os
import sys

__all__ = ["print_text"]


def print_text(text: str) -> None:
    """Print ``text``; a reader that stops early ends the output, not the process with a BrokenPipeError stack."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the interpreter's final flush goes nowhere
