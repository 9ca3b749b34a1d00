"""Mapping a function over items in worker processes, when there are enough items to gain."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

__all__ = ["available_cores", "parallel_map"]

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """The cores this process may run on.

    Examples:
        >>> available_cores() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parallel_map(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int | None,
    min_items: int = 2,
) -> list[Result]:
    """``[function(item) for item in items]``, in up to ``workers`` processes.

    ``workers=None`` uses every available core. With one worker, or fewer than ``min_items``
    items (starting processes would cost more than it saves), it runs in this process.
    ``function`` must be a module-level function, and items and results picklable.

    Examples:
        >>> parallel_map(abs, [-1, 2, -3], workers=1)
        [1, 2, 3]
    """
    workers = min(available_cores() if workers is None else workers, len(items))
    if workers <= 1 or len(items) < min_items:
        return [function(item) for item in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items, chunksize=max(1, len(items) // (4 * workers))))
