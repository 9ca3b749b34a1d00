"""Periodic events on a counter that advances by uneven increments (frames, steps)."""

from __future__ import annotations

__all__ = ["crossed_multiple"]


def crossed_multiple(previous: int, current: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(previous, current]``.

    The counter may advance by any amount: a batch of 6,000 frames crosses a 5,000-frame period
    at most once and is due once, however far it overshoots.

    Args:
        previous: the counter before the increment.
        current: the counter after it.
        every: the period, ``>= 1``.

    Examples:
        >>> crossed_multiple(4_000, 6_000, 5_000), crossed_multiple(6_000, 9_000, 5_000)
        (True, False)
        >>> crossed_multiple(0, 5_000, 5_000)
        True
    """
    return current // every > previous // every
