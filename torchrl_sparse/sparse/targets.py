"""Finding the tensors a sparsifier masks: layers selected by name glob, in modules and losses.

A TorchRL loss does not hold its networks' parameters in the networks: ``convert_to_functional``
moves them into ``<network>_params`` (a :class:`~tensordict.nn.TensorDictParams`) and, for
networks with target copies, into ``target_<network>_params``. ``SACLoss`` even stacks
``num_qvalue_nets`` independent copies along a new leading dimension. The functions here walk
either shape and return one :class:`SparseTarget` per masked tensor, so the rest of the library
never has to care where a weight lives.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from tensordict.nn import TensorDictParams
from torch import nn

PRUNABLE_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BIAS_POLICIES = ("dense", "prune", "remove")
BiasPolicy = Literal["dense", "prune", "remove"]


@dataclass(frozen=True)
class SparsityGroup:
    """A set of layers that share one sparsity target.

    Args:
        include: glob pattern(s) matched against layer names (the module path of each
            ``nn.Linear``/``nn.Conv*``, e.g. ``"actor_network.module.0.module.*"``).
        sparsity: target fraction of zero weights, in ``[0, 1)``.
        exclude: glob pattern(s) removing layers from ``include`` (e.g. a task encoder).

    Examples:
        >>> from torchrl_sparse.sparse import SparsityGroup
        >>> SparsityGroup("actor_network.*", 0.95, exclude=["*heads*"]).sparsity
        0.95
    """

    include: str | Sequence[str]
    sparsity: float
    exclude: str | Sequence[str] = ()

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity, f"sparsity of group {self.include_patterns}")

    @property
    def include_patterns(self) -> tuple[str, ...]:
        return (self.include,) if isinstance(self.include, str) else tuple(self.include)

    @property
    def exclude_patterns(self) -> tuple[str, ...]:
        return (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude)


GroupsLike = Mapping[str, float] | Sequence[SparsityGroup] | SparsityGroup


def check_sparsity(value: float, what: str) -> None:
    """Raise a ``ValueError`` unless ``value`` is a sparsity in ``[0, 1)``."""
    if not isinstance(value, int | float) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{what} must be a float in [0, 1), got {value!r}.")


def as_groups(groups: GroupsLike) -> list[SparsityGroup]:
    """Normalise ``{glob: sparsity}``, a group, or a list of groups to a list of groups."""
    if isinstance(groups, SparsityGroup):
        return [groups]
    if isinstance(groups, Mapping):
        return [SparsityGroup(pattern, sparsity) for pattern, sparsity in groups.items()]
    groups = list(groups)
    if not groups or not all(isinstance(group, SparsityGroup) for group in groups):
        raise ValueError(
            "groups must be a non-empty {glob: sparsity} mapping or a list of SparsityGroup, "
            f"got {groups!r}."
        )
    return groups


@dataclass(eq=False)
class SparseTarget:
    """One masked tensor and everything that must follow its mask.

    Attributes:
        name: readable parameter name, e.g. ``"qvalue_network.module.net.0.weight"``.
        layer: name of the layer (module path) it belongs to.
        kind: ``"weight"`` or ``"bias"``.
        param: the online parameter (gradients and optimizer state follow the mask).
        copies: other tensors holding the same weights, e.g. target-network parameters.
        stack_dims: number of leading dimensions that index independent copies
            (``SACLoss`` stacks its Q-networks), each copy is sparsified on its own.
        group: index of the :class:`SparsityGroup` that selected it.

    Examples:
        A DQN loss holds the online weight and its target-network copy, which follows the mask:

        >>> from torchrl.modules import MLP, QValueActor
        >>> from torchrl.objectives import DQNLoss
        >>> from torchrl_sparse.sparse import SparsityGroup, find_targets
        >>> qnet = QValueActor(MLP(in_features=4, out_features=2, num_cells=[8]),
        ...                    in_keys=["observation"], action_space="one-hot")
        >>> loss = DQNLoss(qnet, action_space="one-hot", delay_value=True)
        >>> target = find_targets(loss, [SparsityGroup("*", 0.5)])[0]
        >>> target.name, target.kind, len(target.copies)
        ('value_network.module.0.module.0.weight', 'weight', 1)
        >>> target.num_copies, tuple(target.unit_shape), target.unit_numel
        (1, (8, 4), 32)
    """

    name: str
    layer: str
    kind: Literal["weight", "bias"]
    param: nn.Parameter
    copies: list[torch.Tensor] = field(default_factory=list)
    stack_dims: int = 0
    group: int = 0

    @property
    def unit_shape(self) -> torch.Size:
        """Shape of one copy, without the stacked leading dimensions."""
        return self.param.shape[self.stack_dims :]

    @property
    def num_copies(self) -> int:
        return int(torch.Size(self.param.shape[: self.stack_dims]).numel())

    @property
    def unit_numel(self) -> int:
        return self.unit_shape.numel()


@dataclass(frozen=True)
class _Layer:
    name: str
    module: nn.Module
    params: dict[str, nn.Parameter]
    copies: dict[str, torch.Tensor]
    stack_dims: int


def _module_layers(model: nn.Module) -> list[_Layer]:
    layers: list[_Layer] = []
    seen: set[int] = set()
    for layer_name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_LAYERS) or id(module.weight) in seen:
            continue
        seen.add(id(module.weight))
        params = {"weight": module.weight}
        if module.bias is not None:
            params["bias"] = module.bias
        layers.append(_Layer(layer_name, module, params, {}, 0))
    return layers


def _loss_layers(loss: nn.Module) -> list[_Layer]:
    """Layers of a TorchRL ``LossModule``, read from its ``<network>_params`` containers."""
    layers: list[_Layer] = []
    seen: set[int] = set()
    for attr, params in loss._modules.items():
        if not isinstance(params, TensorDictParams) or attr.startswith("target_"):
            continue
        if not attr.endswith("_params"):
            continue
        network_name = attr[: -len("_params")]
        network = getattr(loss, network_name, None)
        if not isinstance(network, nn.Module):
            continue
        target_params = loss._modules.get(f"target_{attr}")
        by_layer: dict[tuple[str, ...], dict[str, nn.Parameter]] = {}
        for key in params.keys(include_nested=True, leaves_only=True):
            key = (key,) if isinstance(key, str) else key
            by_layer.setdefault(key[:-1], {})[key[-1]] = params.get(key)
        for path, tensors in by_layer.items():
            try:
                module = network.get_submodule(".".join(path))
            except AttributeError:
                continue
            if not isinstance(module, PRUNABLE_LAYERS) or "weight" not in tensors:
                continue
            weight = tensors["weight"]
            if id(weight) in seen:
                continue
            seen.add(id(weight))
            copies = {}
            if target_params is not None:
                for param_name in tensors:
                    copies[param_name] = target_params.get((*path, param_name))
            stack_dims = weight.dim() - module.weight.dim()
            selected = {k: v for k, v in tensors.items() if k in ("weight", "bias")}
            layers.append(
                _Layer(".".join((network_name, *path)), module, selected, copies, stack_dims)
            )
    return layers


def find_layers(model: nn.Module) -> list[_Layer]:
    """All prunable (``Linear``/``Conv``) layers of a module or a TorchRL loss.

    Their ``name`` is what the globs of a :class:`SparsityGroup` are matched against.

    Examples:
        >>> import torch
        >>> from torchrl.modules import MLP, QValueActor
        >>> from torchrl.objectives import DQNLoss
        >>> from torchrl_sparse.sparse import find_layers
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> [layer.name for layer in find_layers(net)]
        ['0', '2']
        >>> qnet = QValueActor(net, in_keys=["observation"], action_space="one-hot")
        >>> [layer.name for layer in find_layers(DQNLoss(qnet, action_space="one-hot"))]
        ['value_network.module.0.module.0', 'value_network.module.0.module.2']
    """
    from torchrl.objectives import LossModule

    if isinstance(model, LossModule):
        return _loss_layers(model)
    return _module_layers(model)


def find_targets(
    model: nn.Module, groups: Sequence[SparsityGroup], bias: BiasPolicy = "dense"
) -> list[SparseTarget]:
    """Select the tensors to mask, one :class:`SparseTarget` per weight (and bias, if masked).

    Raises:
        ValueError: a pattern matches no layer, a layer is claimed by two groups, or the
            bias policy is unknown. The message lists the available layer names.

    Examples:
        >>> import torch
        >>> from torchrl_sparse.sparse import SparsityGroup, find_targets
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> groups = [SparsityGroup("*", 0.9, exclude="2")]  # keep the output layer dense
        >>> [(t.name, t.group) for t in find_targets(net, groups, bias="prune")]
        [('0.weight', 0), ('0.bias', 0)]
        >>> find_targets(net, [SparsityGroup("actor.*", 0.9)])
        Traceback (most recent call last):
        ...
        ValueError: Pattern 'actor.*' matches no prunable layer. Available layers: ['0', '2'].
    """
    if bias not in BIAS_POLICIES:
        raise ValueError(f"bias must be one of {BIAS_POLICIES}, got {bias!r}.")
    layers = find_layers(model)
    names = [layer.name for layer in layers]
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no prunable layer (one of "
            f"{[cls.__name__ for cls in PRUNABLE_LAYERS]})."
        )
    owner: dict[str, int] = {}
    for index, group in enumerate(groups):
        for pattern in group.include_patterns:
            matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
            if not matched:
                raise ValueError(
                    f"Pattern {pattern!r} matches no prunable layer. Available layers: {names}."
                )
            for name in matched:
                if any(fnmatch.fnmatchcase(name, p) for p in group.exclude_patterns):
                    continue
                if owner.get(name, index) != index:
                    raise ValueError(
                        f"Layer {name!r} is selected by group {owner[name]} and group {index}; "
                        "each layer may belong to one group only."
                    )
                owner[name] = index
        if index not in owner.values():
            raise ValueError(
                f"Group {index} ({group.include_patterns} minus {group.exclude_patterns}) "
                f"selects no layer. Available layers: {names}."
            )
    targets: list[SparseTarget] = []
    for layer in layers:
        if layer.name not in owner:
            continue
        kinds: tuple[Literal["weight", "bias"], ...] = ("weight",)
        if bias != "dense" and "bias" in layer.params:
            kinds = ("weight", "bias")
        for kind in kinds:
            copy = layer.copies.get(kind)
            targets.append(
                SparseTarget(
                    name=f"{layer.name}.{kind}" if layer.name else kind,
                    layer=layer.name,
                    kind=kind,
                    param=layer.params[kind],
                    copies=[copy] if copy is not None else [],
                    stack_dims=layer.stack_dims,
                    group=owner[layer.name],
                )
            )
    return targets
