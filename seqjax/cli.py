"""The command-line style of every seqjax program (launch.py, `python -m seqjax.sample`,
`python -m seqjax.viz`): absl flags; `--help` prints the program's description and flags and exits 0; a
usage error is one line on stderr and exit status 2.

Each program keeps its own `flags.FlagValues`, so the programs can be imported together (tests do) without
their flag names colliding.
"""
from __future__ import annotations

import sys

from absl import flags


class UsageError(Exception):
    """A bad command line: reported as one line, exit status 2."""


def new_flags() -> flags.FlagValues:
    values = flags.FlagValues()
    flags.DEFINE_bool("help", False, "Print this help and exit.", flag_values=values)
    return values


def parse(values: flags.FlagValues, argv: list[str], prog: str, description: str) -> bool:
    """Parse argv (without the program name) into `values`. False when --help was printed (exit 0)."""
    values.unparse_flags()  # each call starts from the defaults, whatever an earlier call parsed
    try:
        rest = values([prog, *argv])
    except flags.Error as e:
        raise UsageError(str(e).strip().splitlines()[-1]) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected arguments {rest[1:]}")
    if values.help:
        # The whole description (a module docstring: every paragraph, not its first line, which may stop
        # mid-sentence); None under `python -OO`, which strips docstrings.
        text = (description or "").strip() or "(description not available: docstrings stripped by python -OO)"
        print(f"usage: {prog} [flags]\n\n{text}\n\nflags:")
        print(values.get_help(include_special_flags=False))
        return False
    return True


def fail(prog: str, message: str, status: int = 2) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return status
