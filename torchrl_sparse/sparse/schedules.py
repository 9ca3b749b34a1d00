"""Sparsity schedules: when the topology changes and how much of the target is reached.

Steps are whatever unit the training loop counts in :meth:`Sparsifier.step` (optimizer steps
or environment frames). ``start`` and ``end`` accept either an ``int`` (a step) or a ``float``
in ``[0, 1]`` (a fraction of ``total_steps``, resolved when the sparsifier is built).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torchrl_sparse.cadence import crossed_multiple

__all__ = ["ConstantSchedule", "CubicSchedule", "ResolvedSchedule", "SparsitySchedule"]

StepLike = int | float


def _resolve_step(value: StepLike, total_steps: int | None, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be an int (steps) or a float fraction, got {value!r}.")
    if isinstance(value, float):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{what}={value!r} as a fraction of training must lie in [0, 1].")
        if total_steps is None:
            raise ValueError(
                f"{what}={value!r} is a fraction of training: pass total_steps to the sparsifier."
            )
        return round(value * total_steps)
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}.")
    return value


@dataclass(frozen=True)
class ResolvedSchedule:
    """A schedule with ``start``/``end`` resolved to steps.

    Updates fall on the multiples of ``update_every`` from ``start`` on, up to
    :attr:`last_update`, which is always an update too.

    Examples:
        >>> from torchrl_sparse.sparse import CubicSchedule
        >>> schedule = CubicSchedule(start=0, end=950, update_every=100).resolve(total_steps=980)
        >>> schedule.last_update, schedule.is_update_step(900, 980)
        (980, True)
    """

    start: int
    end: int | None
    update_every: int
    power: float | None
    total_steps: int | None = None

    @property
    def last_update(self) -> int | None:
        """Step of the final update: the first multiple of ``update_every`` at or after ``end``.

        Capped at ``total_steps``, so the final sparsity is reached before training ends.
        """
        if self.end is None:
            return None
        boundary = math.ceil(self.end / self.update_every) * self.update_every
        return boundary if self.total_steps is None else min(boundary, self.total_steps)

    def is_update_step(self, previous: int, current: int) -> bool:
        """Whether an update falls in ``(previous, current]``, however large the increment."""
        if current < self.start:
            return False
        crossed = crossed_multiple(previous, current, self.update_every)
        last = self.last_update
        if last is None:
            return crossed
        return previous < last and (crossed or current >= last)

    def fraction(self, step: int) -> float:
        """Fraction of the target sparsity in force at ``step``."""
        if self.power is None:
            return 1.0
        assert self.end is not None
        if step <= self.start:
            return 0.0
        if step >= self.end:
            return 1.0
        progress = (step - self.start) / (self.end - self.start)
        return 1.0 - (1.0 - progress) ** self.power


class SparsitySchedule:
    """Base class: update every ``update_every`` steps between ``start`` and ``end``.

    A subclass sets ``power``: ``None`` holds the full target from the start (as
    :class:`ConstantSchedule`), a number ramps the fraction of the target in force as
    ``1 - (1 - progress) ** power`` from ``start`` to ``end`` (as :class:`CubicSchedule`).

    Examples:
        A linear ramp to the target over the first half of training:

        >>> from torchrl_sparse.sparse import SparsitySchedule
        >>> class LinearSchedule(SparsitySchedule):
        ...     power = 1.0
        >>> schedule = LinearSchedule(update_every=10, start=0, end=0.5).resolve(total_steps=100)
        >>> schedule.end, schedule.fraction(25), schedule.fraction(80)
        (50, 0.5, 1.0)
        >>> schedule.is_update_step(9, 10), schedule.is_update_step(10, 15)
        (True, False)
    """

    power: float | None = None

    def __init__(self, update_every: int, start: StepLike = 0, end: StepLike | None = None) -> None:
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise ValueError(f"update_every must be a positive int, got {update_every!r}.")
        self.update_every = update_every
        self.start = start
        self.end = end

    def resolve(self, total_steps: int | None) -> ResolvedSchedule:
        """Turn fractions into steps and check the window.

        Raises:
            ValueError: the schedule ends before it starts or after training ends.
        """
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}.")
        start = _resolve_step(self.start, total_steps, "start")
        end = None if self.end is None else _resolve_step(self.end, total_steps, "end")
        if end is not None and end <= start:
            raise ValueError(f"The schedule ends (end={end}) before it starts (start={start}).")
        if total_steps is not None and end is not None and end > total_steps:
            raise ValueError(
                f"The schedule ends at step {end}, after training ends (total_steps="
                f"{total_steps}); allowed: end <= total_steps."
            )
        if total_steps is not None and start >= total_steps:
            raise ValueError(f"start={start} must be before total_steps={total_steps}.")
        return ResolvedSchedule(start, end, self.update_every, self.power, total_steps)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(update_every={self.update_every}, start={self.start!r}, "
            f"end={self.end!r})"
        )


class ConstantSchedule(SparsitySchedule):
    """The full target from the start; topology updates every ``update_every`` steps.

    Used by SET, RigL and static sparsity. RigL stops updating at ``end`` (75% of training in
    Evci et al.); SET and static sparsity run to the end (``end=None``).

    Examples:
        >>> from torchrl_sparse.sparse import ConstantSchedule
        >>> schedule = ConstantSchedule(update_every=2000).resolve(total_steps=10_000)
        >>> schedule.fraction(0), schedule.is_update_step(1999, 2000)
        (1.0, True)
    """


class CubicSchedule(SparsitySchedule):
    """Zhu & Gupta's gradual schedule: ``s_t = s_f (1 - (1 - (t - t_s) / (t_e - t_s))^3)``.

    Zero before ``start``, the final target after ``end``, pruning every ``update_every`` steps
    and once more at the first boundary at or after ``end`` (or at ``total_steps`` if training
    ends before that boundary), so the final target is always reached.

    Args:
        start: first pruning step (int) or fraction of training (float), default 5%.
        end: step or fraction at which the final sparsity is reached, default 80%.
        update_every: steps between pruning events (500 on MiniGrid, 5,000 on MetaWorld).
        power: exponent of the schedule (3 in Zhu & Gupta).

    Examples:
        >>> from torchrl_sparse.sparse import CubicSchedule
        >>> schedule = CubicSchedule(start=0, end=1000, update_every=100).resolve(None)
        >>> round(schedule.fraction(500), 3)
        0.875
    """

    def __init__(
        self,
        start: StepLike = 0.05,
        end: StepLike = 0.8,
        update_every: int = 500,
        power: float = 3.0,
    ) -> None:
        super().__init__(update_every=update_every, start=start, end=end)
        if power <= 0:
            raise ValueError(f"power must be positive, got {power!r}.")
        self.power = power
