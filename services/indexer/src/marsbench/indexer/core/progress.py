"""Progress arithmetic for long jobs: rate and ETA from counts and elapsed time."""

from __future__ import annotations


def rate_and_eta(
    done_this_run: int, elapsed_s: float, remaining: int | None
) -> tuple[float | None, float | None]:
    """Items per second over this run, and seconds left at that rate (None when unknown)."""
    if done_this_run <= 0 or elapsed_s <= 0:
        return None, None
    rate = done_this_run / elapsed_s
    eta = remaining / rate if remaining is not None else None
    return rate, eta
