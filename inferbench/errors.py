"""The project's one exception type, caught once at the CLI edge (exit code 1)."""

from __future__ import annotations


class InferBenchError(Exception):
    """A problem the user can fix: the message names what is wrong and how to fix it."""
