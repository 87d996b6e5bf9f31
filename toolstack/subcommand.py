"""The frame of dom0's small subcommand tools (`xenpy trace`, `xenpy evtchn|gnttab|vcpu`):
argparse subcommands whose handlers raise Failure for a one-line error."""
from __future__ import annotations

import argparse
import sys


class Failure(Exception):
    """One line for stderr, exit status 1."""


def dispatch(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    try:
        ns = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return ns.func(ns)
    except Failure as e:
        print(e, file=sys.stderr)
        return 1
