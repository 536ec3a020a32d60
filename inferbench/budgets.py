"""The limits a spec is held to, in a module that imports nothing: the spec validates
against them, and the DAG and CLI (which must parse without pydantic) size timeouts by them."""

from __future__ import annotations

MAX_RATE_RPS = 100_000.0
MAX_POINT_S = 3600.0  # one measurement point: an hour
# Numbers in one request (batch x sample): 16 Mi float32 are 64 MiB, several times that
# as JSON; beyond it the payloads, not the server, would be measured (and fill memory).
MAX_REQUEST_ELEMENTS = 1 << 24
# One run's worst case (every family using its whole time cap); a longer run is a typo or
# a sweep that belongs in several runs.
MAX_PLANNED_S = 24 * 3600.0
