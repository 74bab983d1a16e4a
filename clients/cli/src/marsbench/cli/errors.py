"""Errors the CLI reports as one line and a non-zero exit, without a traceback."""

from __future__ import annotations


class CommandError(Exception):
    pass
