"""Plasticity interventions: ReDo, Reset and shrink-and-perturb, all mask-aware.

Every intervention is scheduled the same way: call ``step(frames, batch)`` once per training
iteration with the number of new environment steps (or 1 to count updates); it fires each time
the running count crosses a multiple of ``every`` and returns a dict of statistics when it fired,
``None`` otherwise. Sparsity masks (a mapping or a
:class:`~torchrl_sparse.plasticity.MaskProvider`) are respected: pruned entries stay exactly
zero in weights and optimizer state. Optimizer state is reset with
:func:`reset_optimizer_state`, which handles every state tensor shaped like the parameter
(Adam ``exp_avg``/``exp_avg_sq``, SGD ``momentum_buffer``, RMSprop ``square_avg``, ...).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from torchrl_sparse.plasticity.masks import MaskSource, resolve_masks
from torchrl_sparse.plasticity.metrics import check_tau, unit_scores
from torchrl_sparse.plasticity.probes import ActivationProbe, HiddenLayer

__all__ = [
    "InitFn",
    "ReDo",
    "Reset",
    "ShrinkAndPerturb",
    "reset_optimizer_state",
]

#: Returns a freshly initialised copy of a layer's weights (same shape as ``layer.weight``).
InitFn = Callable[[nn.Module], torch.Tensor]


def reset_optimizer_state(
    optimizer: torch.optim.Optimizer | None,
    param: torch.Tensor,
    index: torch.Tensor | None = None,
    dim: int = 0,
) -> None:
    """Reset the optimizer state of ``param``, entirely or for some slices along ``dim``.

    With ``index=None`` the parameter's state is dropped, so the optimizer re-creates it as for
    a new parameter (Adam's step count restarts). With an index, every state tensor shaped like
    the parameter is zeroed at those slices and scalar entries such as ``step`` are kept.

    Args:
        optimizer: any ``torch.optim`` optimizer (``None`` does nothing).
        param: the parameter.
        index: bool mask (or long indices) over ``param.shape[dim]``.
        dim: the dimension ``index`` refers to.

    Examples:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(3, 2))
        >>> opt = torch.optim.Adam([w])
        >>> w.sum().backward(); opt.step()
        >>> reset_optimizer_state(opt, w, torch.tensor([True, False, False]))
        >>> opt.state[w]["exp_avg"][:, 0]
        tensor([0.0000, 0.1000, 0.1000])
    """
    if optimizer is None or param not in optimizer.state:
        return
    if index is None:
        del optimizer.state[param]
        return
    idx = _as_indices(index).to(param.device)
    for value in optimizer.state[param].values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value.index_fill_(dim, idx, 0)


def _as_indices(index: torch.Tensor) -> torch.Tensor:
    return index.nonzero().flatten() if index.dtype == torch.bool else index


def _fresh_weight(layer: nn.Module) -> torch.Tensor:
    # a fresh copy uses the layer's own default initialiser (kaiming-uniform for Linear/Conv)
    fresh = copy.deepcopy(layer)
    fresh.reset_parameters()
    return fresh.weight.detach()


def _check_every(every: int, what: str = "every") -> int:
    if int(every) != every or every < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {what}={every}")
    return int(every)


def _match_layers(module: nn.Module, patterns: Sequence[str]) -> list[tuple[str, nn.Module]]:
    named = dict(module.named_modules())
    chosen: dict[str, nn.Module] = {}
    for pattern in patterns:
        hits = [n for n in named if n and fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ValueError(
                f"layer pattern {pattern!r} matches no submodule; allowed are qualified names "
                f"(fnmatch patterns) of named_modules(), e.g. {[n for n in named if n][:6]}"
            )
        empty = [n for n in hits if not any(True for _ in named[n].parameters(recurse=False))]
        if empty:
            # e.g. an activation where a LayerNorm shifted the head's layer indices
            raise ValueError(
                f"layer pattern {pattern!r} matches modules without parameters {empty}: "
                "nothing to reset; name the Linear/Conv layers."
            )
        chosen.update({n: named[n] for n in hits})
    return list(chosen.items())


def _qual(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _Scheduled:
    """Step counting shared by the interventions."""

    def __init__(self, every: int, max_count: int | None) -> None:
        self.every = _check_every(every)
        if max_count is not None and (int(max_count) != max_count or max_count < 0):
            raise ValueError(f"the maximum count must be an integer >= 0 or None, got {max_count}")
        self.max_count = max_count
        self.steps = 0
        self.count = 0
        self._next_at = self.every

    def _due(self, frames: int) -> bool:
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got frames={frames}")
        self.steps += int(frames)
        if self.steps < self._next_at:
            return False
        self._next_at = (self.steps // self.every + 1) * self.every
        return self.max_count is None or self.count < self.max_count

    def state_dict(self) -> dict[str, Any]:
        """Step counter, next trigger and number of applications."""
        return {"steps": self.steps, "next_at": self._next_at, "count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the counters saved by :meth:`state_dict`."""
        self.steps = int(state_dict["steps"])
        self._next_at = int(state_dict["next_at"])
        self.count = int(state_dict["count"])


class ReDo(_Scheduled):
    """Recycle dormant neurons (Sokar et al. 2023) every ``every`` steps.

    Units whose score ``s_i <= tau`` (see :func:`~torchrl_sparse.plasticity.unit_scores`) get
    their incoming weights re-initialised, their bias and outgoing weights zeroed, and the
    optimizer state of those rows/columns zeroed. Incoming weights live in every source layer
    of the unit (every expert of a mixture), outgoing weights in every consumer (every task
    head reading a shared representation). Inside a sparse layer only the active incoming
    entries are re-initialised, so no pruned connection is revived; units without any incoming
    connection are left alone. Hidden layers follow the rule of
    :mod:`~torchrl_sparse.plasticity.probes`.

    Args:
        module: the network (any ``nn.Module`` or ``TensorDictModule``).
        optimizer: the optimizer holding ``module``'s parameters, or ``None``.
        tau: dormancy threshold (Todorov et al. use 0.001).
        every: apply every this many steps (Todorov et al.: 5,000).
        masks: sparsity masks, a mapping or a :class:`~torchrl_sparse.plasticity.MaskProvider`.
        layers: explicit hidden layers (default: found automatically).
        init_fn: fresh weights for a layer (default: the layer's own ``reset_parameters``).

    Raises:
        ValueError: on ``tau < 0``, ``every < 1`` or a module without hidden layers.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> opt = torch.optim.Adam(net.parameters())
        >>> with torch.no_grad():
        ...     net[0].bias[:3] = -100.0  # three dead ReLUs
        >>> redo = ReDo(net, opt, tau=0.0, every=2)
        >>> redo.step(1, torch.randn(16, 4)) is None
        True
        >>> redo.step(1, torch.randn(16, 4))
        {'redo/0': 3, 'redo/total': 3}
        >>> float(net[2].weight[:, :3].detach().abs().sum())
        0.0
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        tau: float = 0.001,
        every: int = 5_000,
        masks: MaskSource = None,
        layers: Sequence[HiddenLayer] | None = None,
        init_fn: InitFn | None = None,
    ) -> None:
        super().__init__(every, None)
        self.module = module
        self.optimizer = optimizer
        self.tau = check_tau(tau)
        self.masks = masks
        self.layers = ActivationProbe(module, layers).layers
        self.init_fn = init_fn or _fresh_weight

    def step(self, frames: int = 1, batch: Any | Callable[[], Any] = None) -> dict[str, int] | None:
        """Advance the counter and apply ReDo when due.

        Args:
            frames: steps since the last call.
            batch: the batch to score units on, or a zero-argument callable returning it
                (called only when ReDo fires, e.g. ``lambda: reservoir.sample(1024)``).

        Returns:
            Number of recycled units per layer (``"redo/<layer>"``) and in total
            (``"redo/total"``) when applied, else ``None``.
        """
        if not self._due(frames):
            return None
        if batch is None:
            raise ValueError("ReDo is due but got batch=None: pass a batch or a callable")
        return self.apply(batch() if callable(batch) else batch)

    @torch.no_grad()
    def apply(self, batch: Any) -> dict[str, int]:
        """Recycle the dormant units of every hidden layer now (scores from one forward pass).

        Args:
            batch: input batch (TensorDict for TensorDict modules, else a tensor).

        Returns:
            Number of recycled units per layer and in total.
        """
        masks = resolve_masks(self.masks, self.module)
        probe = ActivationProbe.capture(self.module, batch, self.layers)
        stats: dict[str, int] = {}
        for layer, act in probe:
            # per-sample unit means are non-negative: their scores are the units' scores
            scores = unit_scores(layer.unit_abs_mean(self.module, act)).cpu()
            dormant = (scores <= self.tau) & layer.alive(masks, scores.shape[0])
            stats[f"redo/{layer.name}"] = int(dormant.sum())
            if dormant.any():
                positions = layer.unit_view(self.module, act).shape[-1]
                self._recycle(layer, dormant, positions, masks)
        self.count += 1
        stats["redo/total"] = sum(stats.values())
        return stats

    def _recycle(
        self,
        layer: HiddenLayer,
        dormant: torch.Tensor,
        positions: int,
        masks: dict[str, torch.Tensor],
    ) -> None:
        for name in layer.sources:
            src = self.module.get_submodule(name)
            rows = dormant.to(src.weight.device)
            fresh = self.init_fn(src).to(src.weight)
            mask = masks.get(_qual(name, "weight"))
            if mask is not None:
                fresh = fresh * mask
            src.weight[rows] = fresh[rows]
            reset_optimizer_state(self.optimizer, src.weight, rows, 0)
            if src.bias is not None:
                src.bias[rows] = 0.0
                reset_optimizer_state(self.optimizer, src.bias, rows, 0)
        for name in layer.consumers:
            nxt = self.module.get_submodule(name)
            # a Linear reads a flattened conv output: ``positions`` columns per channel, the
            # units first (inputs concatenated after them, e.g. a task one-hot, are kept)
            per_unit = positions if isinstance(nxt, nn.Linear) else 1
            width = nxt.weight.shape[1]
            if width < dormant.numel() * per_unit:
                raise ValueError(
                    f"consumer {name!r} reads {width} inputs but the {dormant.numel()} units of "
                    f"hidden layer {layer.name!r} span {dormant.numel() * per_unit}"
                )
            cols = torch.zeros(width, dtype=torch.bool)
            cols[: dormant.numel() * per_unit] = dormant.repeat_interleave(per_unit)
            cols = cols.to(nxt.weight.device)
            nxt.weight[:, cols] = 0.0
            reset_optimizer_state(self.optimizer, nxt.weight, cols, 1)


class Reset(_Scheduled):
    """Re-initialise chosen layers on a schedule, at most ``max_resets`` times.

    The chosen submodules (and their children) are re-initialised with their own
    ``reset_parameters``; pruned entries are zeroed again and the layers' optimizer state is
    dropped. Todorov et al. reset the output layers every 100,000 steps, at most twice.

    Args:
        module: the network.
        layers: qualified submodule names or ``fnmatch`` patterns (e.g. ``"heads.*.2"``).
        optimizer: the optimizer holding the parameters, or ``None``.
        every: reset every this many steps.
        max_resets: maximum number of resets (``None``: unlimited).
        masks: sparsity masks, a mapping or a :class:`~torchrl_sparse.plasticity.MaskProvider`.

    Raises:
        ValueError: if a pattern matches nothing or ``every``/``max_resets`` is invalid.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> reset = Reset(net, ["2"], every=10, max_resets=1)
        >>> [reset.step(10) is not None for _ in range(3)]
        [True, False, False]
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Sequence[str],
        optimizer: torch.optim.Optimizer | None = None,
        *,
        every: int = 100_000,
        max_resets: int | None = 2,
        masks: MaskSource = None,
    ) -> None:
        super().__init__(every, max_resets)
        self.module = module
        self.optimizer = optimizer
        self.masks = masks
        self.layers = _match_layers(module, list(layers))

    def step(self, frames: int = 1, batch: Any = None) -> dict[str, int] | None:
        """Advance the counter and reset when due.

        Args:
            frames: steps since the last call.
            batch: unused; accepted so all interventions share one call signature.

        Returns:
            ``{"reset/count": n}`` when a reset happened, else ``None``.
        """
        if not self._due(frames):
            return None
        return self.apply()

    @torch.no_grad()
    def apply(self) -> dict[str, int]:
        """Reset the chosen layers now (ignores the schedule and the maximum)."""
        masks = resolve_masks(self.masks, self.module)
        for prefix, layer in self.layers:
            for sub in layer.modules():
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
            for name, p in layer.named_parameters():
                mask = masks.get(_qual(prefix, name))
                if mask is not None:
                    p.mul_(mask)
                reset_optimizer_state(self.optimizer, p)
        self.count += 1
        return {"reset/count": self.count}


class ShrinkAndPerturb(_Scheduled):
    """Shrink-and-perturb (Ash & Adams 2020): ``theta <- shrink * theta + perturb * theta_new``.

    ``theta_new`` is a fresh initialisation of each layer (its own ``reset_parameters``), so the
    noise has the scale of the initial weights. Pruned entries stay zero.

    Args:
        module: the network.
        optimizer: the optimizer; its state is dropped for the changed parameters only if
            ``reset_optimizer`` is true.
        shrink: multiplicative factor, in ``[0, 1]``.
        perturb: scale of the fresh initialisation added, ``>= 0``.
        every: apply every this many steps.
        layers: qualified names or patterns of layers to treat; default all Linear/Conv layers.
        max_count: maximum number of applications (``None``: unlimited).
        masks: sparsity masks, a mapping or a :class:`~torchrl_sparse.plasticity.MaskProvider`.
        reset_optimizer: also drop the optimizer state of the treated parameters.

    Raises:
        ValueError: on ``shrink`` outside ``[0, 1]``, ``perturb < 0`` or a bad schedule.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> snp = ShrinkAndPerturb(net, shrink=0.5, perturb=0.0, every=1)
        >>> w = net[0].weight.detach().clone()
        >>> _ = snp.step(1)
        >>> torch.allclose(net[0].weight, 0.5 * w)
        True
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        shrink: float = 0.8,
        perturb: float = 0.2,
        every: int = 100_000,
        layers: Sequence[str] | None = None,
        max_count: int | None = None,
        masks: MaskSource = None,
        reset_optimizer: bool = False,
    ) -> None:
        super().__init__(every, max_count)
        if not 0 <= shrink <= 1:
            raise ValueError(f"shrink must lie in [0, 1], got shrink={shrink}")
        if not perturb >= 0:
            raise ValueError(f"perturb must be >= 0, got perturb={perturb}")
        self.module = module
        self.optimizer = optimizer
        self.shrink = float(shrink)
        self.perturb = float(perturb)
        self.masks = masks
        self.reset_optimizer = reset_optimizer
        if layers is None:
            kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
            self.layers = [(n, m) for n, m in module.named_modules() if isinstance(m, kinds)]
        else:
            self.layers = _match_layers(module, list(layers))

    def step(self, frames: int = 1, batch: Any = None) -> dict[str, int] | None:
        """Advance the counter and apply when due.

        Args:
            frames: steps since the last call.
            batch: unused; accepted so all interventions share one call signature.

        Returns:
            ``{"shrink_perturb/count": n}`` when applied, else ``None``.
        """
        if not self._due(frames):
            return None
        return self.apply()

    @torch.no_grad()
    def apply(self) -> dict[str, int]:
        """Shrink and perturb the chosen layers now."""
        masks = resolve_masks(self.masks, self.module)
        for prefix, layer in self.layers:
            fresh = copy.deepcopy(layer)
            for sub in fresh.modules():
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
            new = dict(fresh.named_parameters())
            for name, p in layer.named_parameters():
                p.mul_(self.shrink).add_(new[name].to(p), alpha=self.perturb)
                mask = masks.get(_qual(prefix, name))
                if mask is not None:
                    p.mul_(mask)
                if self.reset_optimizer:
                    reset_optimizer_state(self.optimizer, p)
        self.count += 1
        return {"shrink_perturb/count": self.count}
