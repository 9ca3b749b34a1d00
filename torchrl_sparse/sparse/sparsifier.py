"""The :class:`Sparsifier`: masks that hold everywhere a weight lives.

The masks belong to the sparsifier, the weights stay plain ``nn.Parameter``s (no
``torch.nn.utils.prune``, no parametrizations): TorchRL losses capture their parameters when
they are built, so anything that re-registers ``weight`` afterwards breaks them. Instead the
sparsifier keeps pruned entries exactly zero in

* the gradients (a post-accumulate-grad hook, so gradient clipping sees the sparse gradient),
* the weights and every optimizer state tensor shaped like a weight (an optimizer step
  post-hook, for any optimizer, see :func:`preserves_zeros`),
* target-network copies and stacked ensemble copies (``SACLoss``), at every topology change;
  ``SoftUpdate``/``HardUpdate`` of zero onto zero keeps them zero in between.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from torchrl_sparse.sparse.distributions import LayerDistribution, Uniform
from torchrl_sparse.sparse.masks import num_active
from torchrl_sparse.sparse.methods import GMP, SET, MethodContext, SparseMethod
from torchrl_sparse.sparse.schedules import ResolvedSchedule
from torchrl_sparse.sparse.targets import (
    BiasPolicy,
    GroupsLike,
    SparseTarget,
    as_groups,
    find_targets,
)

__all__ = ["Sparsifier", "flops_per_forward", "preserves_zeros"]

SCOPES = ("layer", "global")
_PROBE_STEPS = 4


def preserves_zeros(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps zero state at zero where the weight and gradient are zero.

    Decided by behaviour rather than by name, so it covers any optimizer and its
    hyperparameters: for each parameter group, a fresh optimizer of the same class and
    settings takes a few steps on a small probe tensor, half of it pruned (zero weight, zero
    gradient, state zeroed once after the first step, as the :class:`Sparsifier` does). It
    preserves zeros if every state tensor shaped like the probe stays exactly zero there.
    Adam, SGD and most others do; Adamax (its infinity norm gains ``eps``) and Rprop (its step
    sizes are clamped from below) do not. An optimizer that cannot be probed (one that needs
    sparse gradients, say) counts as not preserving zeros.

    The :class:`Sparsifier` masks the state of a zero-preserving optimizer only when the state
    is created or replaced and at topology changes; any other after every step.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import preserves_zeros
        >>> params = [torch.nn.Parameter(torch.ones(4, 4))]
        >>> preserves_zeros(torch.optim.Adam(params)), preserves_zeros(torch.optim.Rprop(params))
        (True, False)
    """
    for group in optimizer.param_groups:
        dims = {p.dim() for p in group["params"] if p.dim() > 0}
        for dim in sorted(dims):
            reference = next(p for p in group["params"] if p.dim() == dim)
            if not _probe_preserves_zeros(optimizer, group, dim, reference):
                return False
    return True


def _constructor_kwargs(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    # ``defaults`` may hold more than the constructor takes (AdamW's inherited Adam flags).
    parameters = inspect.signature(type(optimizer)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(optimizer.defaults)
    names = {p.name for p in parameters}
    return {k: v for k, v in optimizer.defaults.items() if k in names}


def _probe_preserves_zeros(
    optimizer: torch.optim.Optimizer, group: dict[str, Any], dim: int, reference: torch.Tensor
) -> bool:
    shape = (4, 4, *(1,) * (dim - 2)) if dim > 1 else (16,)
    generator = torch.Generator().manual_seed(0)  # never the global generator
    like = {"device": reference.device, "dtype": reference.dtype}
    mask = (torch.arange(16).reshape(shape) % 2 == 0).to(reference.device)
    weight = mask * torch.randn(shape, generator=generator).to(**like)
    probe = nn.Parameter(weight)
    settings = {k: v.clone() if torch.is_tensor(v) else v for k, v in group.items()}
    settings.pop("params")
    seen: tuple[int, ...] = ()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test_optimizer = type(optimizer)([probe], **_constructor_kwargs(optimizer))
            test_optimizer.param_groups[0].update(settings)
            for _ in range(_PROBE_STEPS):
                probe.grad = mask * torch.randn(shape, generator=generator).to(**like)
                test_optimizer.step(lambda: torch.zeros(()))
                with torch.no_grad():
                    probe.mul_(mask)
                    state = [
                        v
                        for v in test_optimizer.state[probe].values()
                        if torch.is_tensor(v) and v.shape == probe.shape
                    ]
                    if tuple(id(v) for v in state) != seen:  # new state: the sparsifier masks it
                        seen = tuple(id(v) for v in state)
                        for value in state:
                            value.mul_(mask.to(value.dtype))
                    elif any(bool(value[~mask].any()) for value in state):
                        return False
    except Exception:  # unprobeable: masking its state after every step is always right
        return False
    return True


class Sparsifier:
    """Makes the selected layers of a module or a TorchRL loss sparse, and keeps them sparse.

    Args:
        model: an ``nn.Module``, ``TensorDictModule`` or TorchRL ``LossModule``. With a loss,
            layer names start with the network's name, e.g. ``"actor_network.module.0..."``
            or ``"qvalue_network.module.net.0"``, and target-network copies follow the masks.
        groups: ``{glob: sparsity}`` or a list of :class:`SparsityGroup`; each glob is matched
            against layer names (``Linear``/``Conv`` module paths).
        method: the sparse method (:class:`GMP`, :class:`SET`, :class:`RigL`,
            :class:`StaticSparse`, :class:`IterativeMagnitudePruning`); default GMP.
        distribution: how a group's target is split across its layers (:class:`Uniform`,
            :class:`ER`, :class:`ERK`); default uniform.
        scope: ``"layer"`` ranks magnitudes within each layer, ``"global"`` across each group
            (magnitude methods only; random topologies always follow the distribution).
        bias: ``"dense"`` keeps biases dense, ``"prune"`` prunes them at their layer's density,
            ``"remove"`` zeroes and freezes them (the "no bias" condition).
        total_steps: length of training in the unit counted by :meth:`step`; needed when a
            schedule gives ``start``/``end`` as fractions, and checked against the schedule.
        optimizer: optimizer(s) holding the masked parameters; also see
            :meth:`attach_optimizer`.
        seed: seed of the sparsifier's own generator (random topologies, SET regrowth). Use
            the same seed on every rank; masks are also broadcast from rank 0 under
            ``torch.distributed``.

    Examples:
        Make the actor of a PPO loss 90% sparse with GMP:

        >>> import torch
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl.modules import MLP, ProbabilisticActor, ValueOperator
        >>> from torchrl.objectives import ClipPPOLoss
        >>> from torchrl_sparse.sparse import GMP, CubicSchedule, Sparsifier
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(MLP(in_features=4, out_features=3, num_cells=[64]),
        ...                      ["observation"], ["logits"]),
        ...     in_keys=["logits"], distribution_class=torch.distributions.Categorical,
        ... )
        >>> critic = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[64]),
        ...                        in_keys=["observation"])
        >>> loss = ClipPPOLoss(actor, critic)
        >>> optimizer = torch.optim.Adam(loss.parameters(), lr=1e-3)
        >>> sparsifier = Sparsifier(
        ...     loss, {"actor_network.*": 0.9}, method=GMP(CubicSchedule(0.0, 0.5, 10)),
        ...     total_steps=100, optimizer=optimizer,
        ... )
        >>> for _ in range(100):  # loss(td)["loss_objective"].backward(); optimizer.step()
        ...     sparsifier.step()
        >>> round(sparsifier.stats()["sparsity/total"], 2)
        0.9
    """

    def __init__(
        self,
        model: nn.Module,
        groups: GroupsLike,
        method: SparseMethod | None = None,
        distribution: LayerDistribution | None = None,
        scope: Literal["layer", "global"] = "layer",
        bias: BiasPolicy = "dense",
        total_steps: int | None = None,
        optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
        seed: int = 0,
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
        self.model = model
        self.groups = as_groups(groups)
        self.method = method if method is not None else GMP()
        self.distribution = distribution if distribution is not None else Uniform()
        self.scope = scope
        self.bias = bias
        self.total_steps = total_steps
        self.targets: list[SparseTarget] = find_targets(model, self.groups, bias)
        self.schedule: ResolvedSchedule | None = (
            self.method.schedule.resolve(total_steps) if self.method.schedule else None
        )
        if isinstance(self.method, SET):  # and RigL: T_end of the cosine drop fraction
            end = self.schedule.end if self.schedule else None
            self.method.bind(end if end is not None else total_steps)
        # Removed biases are all-zero and frozen; the method never sees them.
        self._method_indices = [
            i for i, t in enumerate(self.targets) if not (t.kind == "bias" and bias == "remove")
        ]
        self._managed = set(self._method_indices)
        self.step_count = 0
        self._check_budget(bias)
        self._generator = torch.Generator().manual_seed(seed)
        self._optimizers: list[torch.optim.Optimizer] = []
        self._handles: list[Any] = []
        # RigL's dense gradient: the sum of the backward passes of the last optimizer step.
        self._dense_grads: list[torch.Tensor | None] = [None] * len(self.targets)
        self._accumulating = [False] * len(self.targets)
        self._capture_dense_grads = False

        self.masks: list[torch.Tensor] = [torch.ones_like(t.param, dtype=torch.bool) for t in self]
        for i in set(range(len(self.targets))) - set(self._method_indices):
            self.masks[i] = torch.zeros_like(self.masks[i])
        self.method.on_step(self._context())
        self._set_masks(self._broadcast(self._validated(self.method.init_masks(self._context()))))
        self._float_masks = self._make_float_masks()
        for index, target in enumerate(self.targets):
            self._handles.append(
                target.param.register_post_accumulate_grad_hook(self._grad_hook(index))
            )
        if optimizer is not None:
            self.attach_optimizer(optimizer)
        self._plan_dense_grads()
        # A random initial topology zeroes weights that may have been loaded from a checkpoint
        # before this sparsifier was built: keep them until training starts, so that
        # load_state_dict can give them back whatever the load order.
        self._before_masking = self._unmasked_values()
        self.apply_masks()

    def __iter__(self) -> Iterator[SparseTarget]:
        return iter(self.targets)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(method={self.method!r}, groups={self.groups!r}, "
            f"distribution={type(self.distribution).__name__}, scope={self.scope!r}, "
            f"bias={self.bias!r}, step={self.step_count}, targets={len(self.targets)})"
        )

    # ------------------------------------------------------------------ optimizer and hooks
    def attach_optimizer(
        self, optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer]
    ) -> None:
        """Keep the optimizer(s)' state sparse and mask weights after every optimizer step.

        Each optimizer is classified once by :func:`preserves_zeros`: the state of one that is
        not zero-preserving is masked after every step.

        Raises:
            ValueError: a masked parameter is held by none of the optimizers.
        """
        optimizers = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else optimizer
        optimizers = list(optimizers)
        held = {
            id(p)
            for opt in [*self._optimizers, *optimizers]
            for g in opt.param_groups
            for p in g["params"]
        }
        missing = [t.name for t in self.targets if id(t.param) not in held]
        if missing:
            raise ValueError(
                f"The optimizer does not hold the masked parameters {missing}; pass an optimizer "
                "built on the sparsified model's (or loss's) parameters."
            )
        for opt in optimizers:
            in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
            indices = [i for i, t in enumerate(self.targets) if id(t.param) in in_opt]
            if indices:  # e.g. a critic optimizer while only the actor is sparse
                hook = self._optimizer_hook(indices, preserves_zeros(opt))
                self._handles.append(opt.register_step_post_hook(hook))
                self._optimizers.append(opt)

    def remove(self) -> None:
        """Remove every hook the sparsifier installed; the weights keep their zeros."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._optimizers.clear()
        self._before_masking = []

    def _grad_hook(self, index: int):
        def hook(param: torch.Tensor) -> None:
            grad = param.grad
            if self._capture_dense_grads and index in self._managed:
                dense = self._dense_grads[index]
                if dense is None:
                    self._dense_grads[index] = grad.detach().clone()
                elif not self._accumulating[index]:
                    dense.copy_(grad)
                else:
                    # .grad holds the masked sum of the earlier passes plus this one, dense:
                    # keep our pruned entries and add.
                    dense.masked_fill_(self.masks[index], 0.0).add_(grad)
                self._accumulating[index] = True
            grad.mul_(self._float_masks[index])

        return hook

    def _optimizer_hook(self, indices: list[int], zero_preserving: bool):
        seen_state: list[tuple[int, ...]] = [()]

        def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self._before_masking = []
            for i in indices:  # the step's dense gradient is complete; the next pass starts anew
                self._accumulating[i] = False
            with torch.no_grad():
                self._mask_params(indices)
                if not zero_preserving:
                    self._mask_optimizer_state(optimizer, indices)
                    return
                # Zero gradient and zero state give zero state in this update rule: only
                # state tensors that were just created (first step, a loaded state) or that
                # a topology change touched need masking, which spares two passes a step.
                state_ids = tuple(
                    id(value)
                    for i in indices
                    for value in optimizer.state.get(self.targets[i].param, {}).values()
                )
                if state_ids != seen_state[0]:
                    self._mask_optimizer_state(optimizer, indices)
                    seen_state[0] = state_ids

        return hook

    def _mask_params(self, indices: Sequence[int]) -> None:
        torch._foreach_mul_(
            [self.targets[i].param for i in indices], [self._float_masks[i] for i in indices]
        )

    @staticmethod
    def _state_like(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> list[torch.Tensor]:
        """The optimizer's state tensors shaped like ``param`` (moments, momentum, ...)."""
        return [
            value
            for value in optimizer.state.get(param, {}).values()
            if isinstance(value, torch.Tensor) and value.shape == param.shape
        ]

    def _mask_optimizer_state(
        self, optimizer: torch.optim.Optimizer, indices: Sequence[int]
    ) -> None:
        tensors, masks = [], []
        for i in indices:
            for value in self._state_like(optimizer, self.targets[i].param):
                tensors.append(value)
                masks.append(self._float_masks[i].to(value.dtype))
        if tensors:
            torch._foreach_mul_(tensors, masks)

    def _unmasked_values(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(tensor, its values, float mask)`` for every tensor the masks are about to change."""
        saved = []
        for i, target in enumerate(self.targets):
            if bool(self.masks[i].all()):
                continue
            tensors = [target.param, *target.copies]
            tensors += [v for opt in self._optimizers for v in self._state_like(opt, target.param)]
            saved += [(t, t.detach().clone(), self._float_masks[i]) for t in tensors]
        return saved

    def apply_masks(self) -> None:
        """Zero every pruned entry: weights, copies (targets), gradients, optimizer state."""
        with torch.no_grad():
            everything = range(len(self.targets))
            self._mask_params(everything)
            for target, mask in zip(self.targets, self._float_masks, strict=True):
                for copy in target.copies:
                    copy.mul_(mask)
                if target.param.grad is not None:
                    target.param.grad.mul_(mask)
            for optimizer in self._optimizers:
                self._mask_optimizer_state(optimizer, everything)

    # ------------------------------------------------------------------ steps and updates
    def step(self, num_steps: int = 1) -> None:
        """Advance the schedule by ``num_steps`` and update the topology when it is due.

        Call it after ``optimizer.step()`` (and after the target-network update), counting in
        the unit of ``total_steps``: ``1`` per optimizer step, or the frames of a batch. The
        increment may change from call to call (a shorter last batch); one that crosses several
        update boundaries updates the topology once.
        """
        if num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}.")
        self._before_masking = []
        self._accumulating = [False] * len(self.targets)
        previous = self.step_count
        self.step_count += num_steps
        if type(self.method).on_step is not SparseMethod.on_step:
            # Building a context costs a distribution solve: only for methods that listen.
            self.method.on_step(self._context())
        if self.schedule is not None and self.schedule.is_update_step(previous, self.step_count):
            self.update_topology()
        elif not self._optimizers:
            with torch.no_grad():
                self._mask_params(range(len(self.targets)))
        self._plan_dense_grads()

    def _plan_dense_grads(self) -> None:
        # The next step() may cross an update whatever its increment: capture on every backward
        # pass while an update can still come (a copy per pass, none after RigL's end).
        last = self.schedule.last_update if self.schedule is not None else None
        self._capture_dense_grads = self.method.needs_dense_grads and (
            last is None or self.step_count < last
        )

    def update_topology(self) -> None:
        """Update the masks now (the method's update), whatever the schedule says."""
        self._before_masking = []
        old = self.masks
        new = self._validated(self.method.update_masks(self._context()))
        new = self._broadcast(new)
        merged = list(old)
        for i, mask in zip(self._method_indices, new, strict=True):
            merged[i] = mask
        grown = [n & ~o for n, o in zip(merged, old, strict=True)]
        self._set_masks(merged)
        self._float_masks = self._make_float_masks()
        with torch.no_grad():
            # Grown connections start at zero, with zero optimizer state (RigL, SET).
            for target, born in zip(self.targets, grown, strict=True):
                if born.any():
                    target.param.masked_fill_(born, 0.0)
                    for opt in self._optimizers:
                        for value in opt.state.get(target.param, {}).values():
                            if isinstance(value, torch.Tensor) and value.shape == born.shape:
                                value.masked_fill_(born, 0.0)
        if self.method.resets_optimizer:
            for opt in self._optimizers:
                opt.state.clear()
        self._dense_grads = [None] * len(self.targets)
        self._accumulating = [False] * len(self.targets)
        self.apply_masks()

    def _broadcast(self, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Give every rank rank 0's masks (identical masks under DDP)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return masks
        synced = []
        for mask in masks:
            buffer = mask.to(torch.uint8)
            dist.broadcast(buffer, src=0)
            synced.append(buffer.bool())
        return synced

    def _context(self) -> MethodContext:
        counts, global_groups = self._budget(self.step_count)
        return MethodContext(
            targets=[self.targets[i] for i in self._method_indices],
            masks=[self.masks[i] for i in self._method_indices],
            num_active=counts,
            global_groups=global_groups,
            generator=self._generator,
            step=self.step_count,
            model=self.model,
            dense_grads=[
                None if self._dense_grads[i] is None else self._dense_grads[i].abs()
                for i in self._method_indices
            ],
        )

    def _budget(
        self, step: int, fraction: float | None = None
    ) -> tuple[list[int], list[tuple[list[int], int]] | None]:
        """Active entries per copy of each method target at ``step``, and global budgets.

        ``fraction`` (of the groups' final sparsities) replaces the schedule's at ``step``.
        """
        if fraction is None:
            fraction = self.schedule.fraction(step) if self.schedule is not None else 1.0
        managed = [self.targets[i] for i in self._method_indices]
        density_of_layer: dict[str, float] = {}
        global_groups: list[tuple[list[int], int]] = []
        for index, group in enumerate(self.groups):
            members = [j for j, t in enumerate(managed) if t.group == index and t.kind == "weight"]
            sparsity = group.sparsity * fraction
            shapes = [managed[j].unit_shape for j in members]
            for j, density in zip(
                members, self.distribution.densities(shapes, sparsity), strict=True
            ):
                density_of_layer[managed[j].layer] = density
            total = sum(managed[j].param.numel() for j in members)
            global_groups.append((members, round((1.0 - sparsity) * total)))
        counts = [num_active(density_of_layer[t.layer], t.unit_numel) for t in managed]
        return counts, global_groups if self.scope == "global" else None

    def _check_budget(self, bias: BiasPolicy) -> None:
        """Refuse settings that cannot be trained, before anything is masked."""
        if bias == "remove" and not any(t.kind == "bias" for t in self.targets):
            raise ValueError(
                "bias='remove' but none of the selected layers has a bias (the network was "
                "built without biases): use bias='dense', or build the network with biases."
            )
        if self.scope == "global":  # ranked across layers: no per-layer count to check
            return
        counts, _ = self._budget(0, fraction=1.0)
        managed = [self.targets[i] for i in self._method_indices]
        for target, count in zip(managed, counts, strict=True):
            if target.kind == "weight" and count == 0:
                sparsity = self.groups[target.group].sparsity
                raise ValueError(
                    f"At sparsity {sparsity} ({type(self.distribution).__name__} layer "
                    f"densities), layer {target.layer!r} ({target.unit_numel} weights) would keep "
                    "no connection: lower the sparsity, use another distribution (ERK keeps "
                    "small layers denser) or exclude the layer."
                )

    def _validated(self, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        managed = [self.targets[i] for i in self._method_indices]
        if len(masks) != len(managed):
            raise RuntimeError(
                f"{type(self.method).__name__} returned {len(masks)} masks for "
                f"{len(managed)} targets."
            )
        for target, mask in zip(managed, masks, strict=True):
            if mask.shape != target.param.shape or mask.dtype != torch.bool:
                raise RuntimeError(
                    f"{type(self.method).__name__} returned a {mask.dtype} mask of shape "
                    f"{tuple(mask.shape)} for {target.name!r} {tuple(target.param.shape)}."
                )
        return masks

    def _set_masks(self, masks: list[torch.Tensor]) -> None:
        if len(masks) == len(self.targets):
            self.masks = [m.to(t.param.device) for m, t in zip(masks, self.targets, strict=True)]
            return
        merged = list(self.masks)
        for i, mask in zip(self._method_indices, masks, strict=True):
            merged[i] = mask.to(self.targets[i].param.device)
        self.masks = merged

    def _make_float_masks(self) -> list[torch.Tensor]:
        return [m.to(t.param.dtype) for m, t in zip(self.masks, self.targets, strict=True)]

    # ------------------------------------------------------------------ introspection
    def named_masks(self, module: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Masks keyed by parameter name in ``module`` (default: the sparsified model).

        The names are those of ``module.named_parameters()``, so the result plugs into any
        tool that walks a module, e.g. the plasticity metrics and ReDo.

        Examples:
            >>> import torch
            >>> from torchrl_sparse.sparse import Sparsifier, StaticSparse
            >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
            >>> sparsifier = Sparsifier(net, {"0": 0.5}, method=StaticSparse())
            >>> list(sparsifier.named_masks())
            ['0.weight']
        """
        module = self.model if module is None else module
        by_param = {id(t.param): m for t, m in zip(self.targets, self.masks, strict=True)}
        return {
            name: by_param[id(param)]
            for name, param in module.named_parameters()
            if id(param) in by_param
        }

    def stats(self) -> dict[str, float]:
        """Sparsity statistics ready to log.

        Returns ``sparsity/<layer>`` (fraction of pruned weights of each layer),
        ``sparsity/total`` (over all selected weights), ``sparsity/nonzero_params`` and
        ``sparsity/dense_params`` (over every parameter of the model).
        """
        stats: dict[str, float] = {}
        pruned_weights = total_weights = pruned = 0
        for target, mask in zip(self.targets, self.masks, strict=True):
            zeros = int(mask.numel() - mask.sum())
            pruned += zeros
            if target.kind == "weight":
                stats[f"sparsity/{target.layer}"] = zeros / mask.numel()
                pruned_weights += zeros
                total_weights += mask.numel()
        dense = sum(p.numel() for p in {id(p): p for p in self.model.parameters()}.values())
        stats["sparsity/total"] = pruned_weights / total_weights
        stats["sparsity/nonzero_params"] = float(dense - pruned)
        stats["sparsity/dense_params"] = float(dense)
        return stats

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Masks, step, schedule position, RNG state and method state."""
        return {
            "step": self.step_count,
            "masks": {t.name: m.clone() for t, m in zip(self.targets, self.masks, strict=True)},
            "generator": self._generator.get_state(),
            "method": self.method.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, then re-apply the masks.

        Load it before training resumes, before or after the model's and the optimizer's
        state: either order gives the weights of the checkpoint. A random initial topology
        zeroes weights when the sparsifier is built; tensors left as it left them (loaded
        before the sparsifier was built) get their values back before the checkpoint's masks
        apply.

        Raises:
            ValueError: the checkpoint's masks do not fit this model (names or shapes).
        """
        masks = state["masks"]
        expected = {t.name: tuple(t.param.shape) for t in self.targets}
        found = {name: tuple(mask.shape) for name, mask in masks.items()}
        if expected != found:
            missing = sorted(set(expected) - set(found))
            unexpected = sorted(set(found) - set(expected))
            mismatched = {
                n: (found[n], expected[n])
                for n in set(found) & set(expected)
                if found[n] != expected[n]
            }
            raise ValueError(
                "The checkpoint's masks do not fit this model: "
                f"missing {missing}, unexpected {unexpected}, "
                f"shape (checkpoint, model) mismatches {mismatched}."
            )
        with torch.no_grad():
            for tensor, values, mask in self._before_masking:
                if torch.equal(tensor, values * mask):  # as the initial draw left it: undo it
                    tensor.copy_(values)
        self._before_masking = []
        self._set_masks([masks[t.name].bool() for t in self.targets])
        self._float_masks = self._make_float_masks()
        self.step_count = int(state["step"])
        self._generator.set_state(state["generator"])
        self.method.load_state_dict(state["method"])
        self._dense_grads = [None] * len(self.targets)
        self._accumulating = [False] * len(self.targets)
        self._plan_dense_grads()
        self.apply_masks()


def flops_per_forward(
    module: nn.Module, *inputs: Any, sparsifier: Sparsifier | None = None
) -> dict[str, float]:
    """Dense-equivalent and sparse FLOPs of one forward pass of ``module`` on ``inputs``.

    Counts multiply-adds of ``Linear`` and ``Conv`` layers as 2 FLOPs each; a sparse layer
    costs in proportion to its active weights. Other operations are ignored, as in the sparse
    training literature.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import Sparsifier, StaticSparse, flops_per_forward
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Linear(10, 10), torch.nn.ReLU(), torch.nn.Linear(10, 1)
        ... )
        >>> sparsifier = Sparsifier(net, {"0": 0.5}, method=StaticSparse())
        >>> flops_per_forward(net, torch.zeros(1, 10), sparsifier=sparsifier)
        {'sparsity/dense_flops': 220.0, 'sparsity/sparse_flops': 120.0}
    """
    density: dict[int, float] = {}
    if sparsifier is not None:
        for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
            if target.kind == "weight":
                density[id(target.param)] = float(mask.float().mean())
    totals = {"dense": 0.0, "sparse": 0.0}

    def count(layer: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        batch = output.shape[0] if output.dim() > 1 else 1
        if isinstance(layer, nn.Linear):
            macs = layer.in_features * layer.out_features * (output.numel() // layer.out_features)
        else:
            kernel = math.prod(layer.weight.shape[1:])
            macs = kernel * output.numel()
        flops = 2.0 * macs / batch
        totals["dense"] += flops
        totals["sparse"] += flops * density.get(id(layer.weight), 1.0)

    handles = [
        m.register_forward_hook(count)
        for m in module.modules()
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)
    ]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {"sparsity/dense_flops": totals["dense"], "sparsity/sparse_flops": totals["sparse"]}
