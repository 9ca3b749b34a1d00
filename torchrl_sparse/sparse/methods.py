"""Sparse training methods: one small updater interface, one class per method.

A :class:`SparseMethod` only decides masks: :meth:`~SparseMethod.init_masks` once, and
:meth:`~SparseMethod.update_masks` at the update steps of its schedule. Everything else
(finding tensors, zeroing weights, gradients, optimizer state and target networks, counting
steps, checkpoints) is the :class:`~torchrl_sparse.sparse.Sparsifier`'s job, so a new method is a
few dozen lines (see ``CONTRIBUTING.md``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from torchrl_sparse.sparse.masks import drop_and_grow, keep_top, random_mask
from torchrl_sparse.sparse.schedules import ConstantSchedule, CubicSchedule, SparsitySchedule
from torchrl_sparse.sparse.targets import SparseTarget

__all__ = [
    "GMP",
    "SET",
    "IterativeMagnitudePruning",
    "MethodContext",
    "RigL",
    "SparseMethod",
    "StaticSparse",
]


@dataclass
class MethodContext:
    """What a method sees when it decides masks.

    Attributes:
        targets: the masked tensors (weights, and biases under the ``"prune"`` policy).
        masks: their current boolean masks (``True`` = active).
        num_active: active entries per copy each target should have at this step, from the
            schedule, the group targets and the layer distribution.
        global_groups: with ``scope="global"``, ``(target indices, total active)`` per group:
            magnitude methods rank across the whole group instead of per target.
        generator: the sparsifier's random generator (checkpointed with it).
        step: the current step.
        model: the sparsified module or loss (for methods that rewind weights).
        dense_grads: ``|grad|`` before masking, per target, for methods that need it: the
            sum of the backward passes of the last optimizer step (gradient accumulation
            included); ``None`` where no backward pass reached a target since the last update.

    Examples:
        The :class:`~torchrl_sparse.sparse.Sparsifier` builds one at every update; a hand-made
        one calls a method directly (here GMP keeps the 2 largest-magnitude weights):

        >>> import torch
        >>> from torchrl_sparse.sparse import GMP, MethodContext, SparsityGroup, find_targets
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[0.3, -0.9, 0.1]]))
        >>> ctx = MethodContext(
        ...     targets=find_targets(net, [SparsityGroup("*", 0.5)]),
        ...     masks=[torch.ones(1, 3, dtype=torch.bool)], num_active=[2], global_groups=None,
        ...     generator=torch.Generator().manual_seed(0), step=0, model=net)
        >>> GMP().update_masks(ctx)
        [tensor([[ True,  True, False]])]
    """

    targets: Sequence[SparseTarget]
    masks: list[torch.Tensor]
    num_active: list[int]
    global_groups: list[tuple[list[int], int]] | None
    generator: torch.Generator
    step: int
    model: nn.Module
    dense_grads: list[torch.Tensor | None] = field(default_factory=list)


def _magnitude(target: SparseTarget, mask: torch.Tensor) -> torch.Tensor:
    # Pruned entries rank below every active one (-1 < |w|), so they stay pruned.
    return target.param.detach().abs().masked_fill(~mask, -1.0)


def magnitude_masks(ctx: MethodContext, num_active: Sequence[int]) -> list[torch.Tensor]:
    """Keep the largest-magnitude active weights: per target, or per group when global."""
    scores = [_magnitude(t, m) for t, m in zip(ctx.targets, ctx.masks, strict=True)]
    masks = [
        keep_top(s, k, t.num_copies)
        for s, k, t in zip(scores, num_active, ctx.targets, strict=True)
    ]
    for members, budget in ctx.global_groups or []:
        flat = torch.cat([scores[i].flatten() for i in members])
        keep = keep_top(flat, min(budget, flat.numel()))
        for i, chunk in zip(members, keep.split([scores[i].numel() for i in members]), strict=True):
            masks[i] = chunk.reshape(scores[i].shape)
    return masks


def _random_masks(ctx: MethodContext) -> list[torch.Tensor]:
    return [
        random_mask(t.param.shape, k, t.num_copies, ctx.generator)
        for t, k in zip(ctx.targets, ctx.num_active, strict=True)
    ]


class SparseMethod(ABC):
    """The updater interface every sparse method implements.

    Args:
        schedule: when masks are updated, and which fraction of the target is in force.
            ``None`` means the topology changes only on an explicit
            :meth:`~torchrl_sparse.sparse.Sparsifier.update_topology` call.

    Examples:
        Random pruning on a cubic schedule (a baseline for GMP): dense at step 0, then at
        each update keep ``ctx.num_active`` random survivors of the current mask.

        >>> import torch
        >>> from torchrl_sparse.sparse import CubicSchedule, SparseMethod, Sparsifier, keep_top
        >>> class RandomPruning(SparseMethod):
        ...     def init_masks(self, ctx):
        ...         return [torch.ones_like(m) for m in ctx.masks]
        ...     def update_masks(self, ctx):  # pruned entries score 0: they stay pruned
        ...         return [keep_top(torch.rand(t.param.shape, generator=ctx.generator) * m, k,
        ...                          t.num_copies)
        ...                 for t, m, k in zip(ctx.targets, ctx.masks, ctx.num_active)]
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> method = RandomPruning(CubicSchedule(start=0, end=100, update_every=10))
        >>> sparsifier = Sparsifier(net, {"*": 0.75}, method=method, total_steps=100)
        >>> sparsifier.stats()["sparsity/total"]
        0.0
        >>> sparsifier.step(100)
        >>> sparsifier.stats()["sparsity/total"]
        0.75
    """

    needs_dense_grads: bool = False
    resets_optimizer: bool = False

    def __init__(self, schedule: SparsitySchedule | None) -> None:
        self.schedule = schedule

    @abstractmethod
    def init_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        """Masks at step 0."""

    @abstractmethod
    def update_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        """New masks at an update step. Newly active entries are zeroed by the sparsifier."""

    def on_step(self, ctx: MethodContext) -> None:  # noqa: B027 - optional hook
        """Called after every :meth:`Sparsifier.step`, before any update."""

    def state_dict(self) -> dict[str, Any]:
        """State that a checkpoint must carry (beyond the sparsifier's masks, step and RNG)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless default
        """Restore :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schedule={self.schedule!r})"


class StaticSparse(SparseMethod):
    """A fixed sparse topology: random (the static-sparsity baseline) or given, then kept.

    Args:
        masks: ``{target name: boolean mask}`` to train with a given topology (e.g. a lottery
            ticket's); every target must have one, of its shape. ``None`` draws a random
            topology at the groups' sparsities (per the layer distribution).

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import Sparsifier, StaticSparse
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> sparsifier = Sparsifier(net, {"*": 0.5}, method=StaticSparse())
        >>> sparsifier.stats()["sparsity/total"]
        0.5

        A given topology (the group's sparsity is then only checked, not used):

        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> given = {"0.weight": torch.eye(8).bool(), "2.weight": torch.ones(2, 8).bool()}
        >>> sparsifier = Sparsifier(net, {"*": 0.0}, method=StaticSparse(masks=given))
        >>> int(sparsifier.masks[0].sum()), int((net[0].weight != 0).sum())
        (8, 8)
    """

    def __init__(self, masks: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__(schedule=None)
        self.masks = masks

    def init_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        if self.masks is None:
            return _random_masks(ctx)
        names = [t.name for t in ctx.targets]
        if set(names) != set(self.masks):
            raise ValueError(
                f"StaticSparse(masks=...) needs one mask per target: missing "
                f"{sorted(set(names) - set(self.masks))}, unknown "
                f"{sorted(set(self.masks) - set(names))}."
            )
        return [self.masks[name].to(torch.bool).clone() for name in names]

    def update_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        return [m.clone() for m in ctx.masks]


class GMP(SparseMethod):
    """Gradual magnitude pruning (Zhu & Gupta 2017): dense start, cubic schedule to the target.

    At each pruning step the smallest-magnitude weights are removed until the schedule's
    sparsity is reached, per layer (``scope="layer"``) or across each group
    (``scope="global"``). Pruned weights never come back.

    Args:
        schedule: defaults to the MiniGrid setting of Todorov et al.: start at 5% and end at 80%
            of training, prune every 500 steps.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import GMP, CubicSchedule, Sparsifier
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> method = GMP(CubicSchedule(start=0, end=100, update_every=10))
        >>> sparsifier = Sparsifier(net, {"*": 0.75}, method=method, total_steps=100)
        >>> for _ in range(100):
        ...     sparsifier.step()
        >>> sparsifier.stats()["sparsity/total"]
        0.75
    """

    def __init__(self, schedule: SparsitySchedule | None = None) -> None:
        super().__init__(schedule if schedule is not None else CubicSchedule())

    def init_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        return magnitude_masks(ctx, ctx.num_active)

    def update_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        return magnitude_masks(ctx, ctx.num_active)


class SET(SparseMethod):
    """Sparse Evolutionary Training (Mocanu et al. 2018): prune-and-regrow at random.

    Starts from a random topology at the target density (use :class:`ERK` with
    ``epsilon=11`` for SET's own Erdos-Renyi initialisation). Every update drops the fraction
    ``zeta`` of the smallest-magnitude active weights and grows as many at random positions,
    at zero.

    Args:
        zeta: fraction of active weights replaced at every update.
        schedule: defaults to an update every 2,000 steps for the whole run.
        decay: ``"constant"`` (Mocanu et al.) or ``"cosine"``, the drop fraction
            ``zeta * 0.5 * (1 + cos(pi * t / T_end))`` with ``T_end`` the schedule's end (the
            mask updater of google-research/rigl's RL configs, used for SET and RigL alike).

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import SET, ConstantSchedule, Sparsifier
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> method = SET(zeta=0.3, schedule=ConstantSchedule(update_every=1))
        >>> sparsifier = Sparsifier(net, {"*": 0.5}, method=method, seed=0)
        >>> before = sparsifier.masks[0].clone()
        >>> sparsifier.step()
        >>> bool((before != sparsifier.masks[0]).any()), sparsifier.stats()["sparsity/total"]
        (True, 0.5)
    """

    def __init__(
        self,
        zeta: float = 0.3,
        schedule: SparsitySchedule | None = None,
        decay: Literal["constant", "cosine"] = "constant",
    ) -> None:
        if not 0.0 < zeta < 1.0:
            raise ValueError(f"zeta must lie in (0, 1), got {zeta!r}.")
        if decay not in ("constant", "cosine"):
            raise ValueError(f"Unknown decay {decay!r}; allowed: ['constant', 'cosine'].")
        super().__init__(schedule if schedule is not None else ConstantSchedule(update_every=2000))
        self.zeta = zeta
        self.decay = decay
        self._end: int | None = None

    def bind(self, end: int | None) -> None:
        """Set ``T_end`` (the resolved schedule end) used by the cosine decay."""
        self._end = end

    def drop_fraction(self, step: int) -> float:
        """Fraction of active weights replaced at ``step``."""
        if self.decay == "constant" or not self._end:
            return self.zeta
        return self.zeta * 0.5 * (1.0 + math.cos(math.pi * min(step, self._end) / self._end))

    def grow_scores(self, ctx: MethodContext, index: int) -> torch.Tensor:
        """Scores ranking inactive entries for growth: uniform noise."""
        return torch.rand(ctx.targets[index].param.shape, generator=ctx.generator)

    def init_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        return _random_masks(ctx)

    def update_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        fraction = self.drop_fraction(ctx.step)
        masks = []
        for index, (target, mask) in enumerate(zip(ctx.targets, ctx.masks, strict=True)):
            active = int(mask.reshape(target.num_copies, -1)[0].sum())
            masks.append(
                drop_and_grow(
                    mask,
                    target.param.detach().abs(),
                    self.grow_scores(ctx, index),
                    drop=round(fraction * active),
                    copies=target.num_copies,
                )
            )
        return masks


class RigL(SET):
    """Rigging the Lottery (Evci et al. 2020): drop by magnitude, grow by gradient.

    Like :class:`SET`, but the grown connections are those with the largest dense gradient
    magnitude, and the drop fraction decays by cosine,
    ``f(t) = f0 * 0.5 * (1 + cos(pi * t / T_end))``, where ``T_end`` is the schedule's end.

    Args:
        drop_fraction: ``f0``: 0.3 for DQN/PPO, 0.5 for SAC.
        schedule: defaults to an update every 250 steps until 75% of training.
        decay: ``"cosine"`` (Evci et al.) or ``"constant"``.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import RigL, Sparsifier
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> optimizer = torch.optim.Adam(net.parameters())
        >>> sparsifier = Sparsifier(
        ...     net, {"*": 0.9}, method=RigL(), optimizer=optimizer, total_steps=1000
        ... )
        >>> round(sparsifier.method.drop_fraction(375), 3)
        0.15
    """

    needs_dense_grads = True

    def __init__(
        self,
        drop_fraction: float = 0.3,
        schedule: SparsitySchedule | None = None,
        decay: Literal["constant", "cosine"] = "cosine",
    ) -> None:
        schedule = schedule if schedule is not None else ConstantSchedule(250, end=0.75)
        super().__init__(zeta=drop_fraction, schedule=schedule, decay=decay)

    def grow_scores(self, ctx: MethodContext, index: int) -> torch.Tensor:
        grad = ctx.dense_grads[index] if ctx.dense_grads else None
        if grad is None:
            raise RuntimeError(
                f"RigL needs the dense gradient of {ctx.targets[index].name!r} at step "
                f"{ctx.step}, but no backward pass reached it since the last update: call "
                "backward() and optimizer.step() before Sparsifier.step()."
            )
        return grad


RewindMode = Literal["original", "permuted", "reinit", "random_mask"]
REWIND_MODES = ("original", "permuted", "reinit", "random_mask")


class IterativeMagnitudePruning(SparseMethod):
    """Lottery tickets by iterative magnitude pruning (Frankle & Carbin; Vischer et al. 2022).

    Each round prunes ``prune_fraction`` of the remaining weights by magnitude (never beyond
    the group's sparsity target) and rewinds the whole model to its values at ``rewind_step``
    (0: the initialisation; k > 0: late rewinding). The optimizer state is cleared, as a new
    round trains from scratch. Rounds run every ``round_steps`` steps or on
    :meth:`~torchrl_sparse.sparse.Sparsifier.update_topology`.

    ``rewind`` selects the ticket or one of its baselines:

    * ``"original"``: mask + original initialisation (the ticket);
    * ``"permuted"``: mask + the layer's initial values randomly permuted;
    * ``"reinit"``: mask + a fresh initialisation (PyTorch's default Linear/Conv init);
    * ``"random_mask"``: a random mask with the same per-layer counts + a fresh initialisation.

    Args:
        prune_fraction: fraction of remaining weights pruned per round, in ``(0, 1)``.
        rewind_step: step whose weights survivors are rewound to.
        rewind: ticket or baseline, see above.
        round_steps: training steps per round; ``None`` for explicit rounds.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import IterativeMagnitudePruning, Sparsifier
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> init = net[0].weight.detach().clone()
        >>> sparsifier = Sparsifier(net, {"*": 0.9}, method=IterativeMagnitudePruning(0.5))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.add_(1.0)  # "training"
        >>> sparsifier.update_topology()
        >>> kept = sparsifier.masks[0]
        >>> torch.equal(net[0].weight[kept], init[kept]), sparsifier.stats()["sparsity/total"]
        (True, 0.5)
    """

    resets_optimizer = True

    def __init__(
        self,
        prune_fraction: float = 0.2,
        rewind_step: int = 0,
        rewind: RewindMode = "original",
        round_steps: int | None = None,
    ) -> None:
        if not 0.0 < prune_fraction < 1.0:
            raise ValueError(f"prune_fraction must lie in (0, 1), got {prune_fraction!r}.")
        if rewind not in REWIND_MODES:
            raise ValueError(f"rewind must be one of {REWIND_MODES}, got {rewind!r}.")
        if rewind_step < 0:
            raise ValueError(f"rewind_step must be >= 0, got {rewind_step!r}.")
        schedule = ConstantSchedule(update_every=round_steps) if round_steps else None
        super().__init__(schedule)
        self.prune_fraction = prune_fraction
        self.rewind_step = rewind_step
        self.rewind = rewind
        self.rounds = 0
        self._snapshot: dict[str, torch.Tensor] | None = None

    def on_step(self, ctx: MethodContext) -> None:
        if self._snapshot is None and ctx.step >= self.rewind_step:
            self._snapshot = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}

    def init_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        return [torch.ones_like(m) for m in ctx.masks]

    def update_masks(self, ctx: MethodContext) -> list[torch.Tensor]:
        if self._snapshot is None:
            raise RuntimeError(
                f"No weights to rewind to: rewind_step={self.rewind_step} has not been reached "
                f"(step {ctx.step})."
            )
        remaining = [
            max(round((1.0 - self.prune_fraction) * int(m.reshape(t.num_copies, -1)[0].sum())), k)
            for t, m, k in zip(ctx.targets, ctx.masks, ctx.num_active, strict=True)
        ]
        global_groups = None
        if ctx.global_groups is not None:
            global_groups = []
            for members, budget in ctx.global_groups:
                active = sum(int(ctx.masks[i].sum()) for i in members)
                global_groups.append(
                    (members, max(round((1 - self.prune_fraction) * active), budget))
                )
        ranked = MethodContext(**{**ctx.__dict__, "global_groups": global_groups})
        masks = magnitude_masks(ranked, remaining)
        ctx.model.load_state_dict(self._snapshot)
        if self.rewind == "random_mask":
            masks = [
                random_mask(
                    t.param.shape,
                    int(m.reshape(t.num_copies, -1)[0].sum()),
                    t.num_copies,
                    ctx.generator,
                )
                for t, m in zip(ctx.targets, masks, strict=True)
            ]
        self._rewrite_weights(ctx)
        self.rounds += 1
        return masks

    def _rewrite_weights(self, ctx: MethodContext) -> None:
        with torch.no_grad():
            for target in ctx.targets:
                if target.kind != "weight":
                    continue
                weight = target.param.view(target.num_copies, -1)
                if self.rewind == "permuted":
                    for row in weight:
                        row.copy_(row[torch.randperm(row.numel(), generator=ctx.generator)])
                elif self.rewind in ("reinit", "random_mask"):
                    fan_in = math.prod(target.unit_shape[1:])
                    bound = 1.0 / math.sqrt(fan_in)
                    noise = torch.rand(weight.shape, generator=ctx.generator)
                    weight.copy_((noise * 2.0 - 1.0) * bound)
                for copy in target.copies:
                    copy.copy_(target.param)

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "snapshot": self._snapshot}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rounds = state["rounds"]
        self._snapshot = state["snapshot"]
