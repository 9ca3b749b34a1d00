"""Activation probes: find the hidden layers of any module and capture their activations.

The rule for a *hidden layer* is the same everywhere in :mod:`torchrl_sparse.plasticity`:

* The probe point is the output of an **activation module** (``nn.ReLU``, ``nn.Tanh``,
  ``nn.ELU``, ... see :data:`ACTIVATION_TYPES`), i.e. the post-nonlinearity value of a unit.
  Normalisation layers (``nn.LayerNorm``) are not probe points: in ``Linear-LayerNorm-ReLU``
  and ``Linear-ReLU-LayerNorm`` alike the ``ReLU`` is probed.
* Each activation is mapped to its **source layers**, which own the incoming weights (used for
  masks and ReDo): the closest ``nn.Linear``/``nn.ConvNd`` that precedes it in
  ``module.named_modules()`` order. A module whose activation mixes several layers declares
  them with a ``hidden_layer_sources()`` method returning ``{activation child name: [source
  names]}`` (names relative to that module); :class:`~torchrl_sparse.modules.MixtureOfExperts`
  declares the last layer of every expert as a source of its mixed representation. An
  activation without a source layer is not a hidden layer.
* The **consumers** (outgoing weights, used by ReDo) are the closest ``Linear``/``ConvNd``
  after the activation wide enough to read the units (``in_features`` or ``in_channels`` at
  least the number of units), and, when that layer opens one branch of an ``nn.ModuleList``
  (the per-task heads of :class:`~torchrl_sparse.modules.MultiHead`), the first layer of every
  other branch with the same input width: every task head reads the shared representation.
  The units are the leading inputs of a consumer (a flattened conv output, possibly followed
  by concatenated inputs such as a task one-hot).
* The output layer is never probed because no activation module follows it. Activations
  applied functionally (``torch.tanh(x)`` in ``forward``) are invisible to the rule; make them
  modules, or pass explicit :class:`HiddenLayer` entries.

A Linear unit is one output feature (last dimension); a conv unit is one output channel, also
when the activation sees the conv output flattened (channel-major, as ``nn.Flatten`` gives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from torchrl_sparse.plasticity.masks import incoming_alive

__all__ = [
    "ACTIVATION_TYPES",
    "ActivationProbe",
    "HiddenLayer",
    "find_hidden_layers",
    "run_module",
]

#: Module types whose outputs are probed as hidden activations.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
)

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAYER_TYPES = (nn.Linear, *_CONV_TYPES)


@dataclass(frozen=True)
class HiddenLayer:
    """One hidden layer: where it is probed, which layers feed it and which layers read it.

    Attributes:
        name: readable layer name (the source layer's qualified name without ``module``
            wrapper segments, or the activation's for several sources), used in metric keys.
        activation: qualified name of the probed activation module.
        sources: qualified names of the Linear/Conv layers producing the units (one, or one
            per expert for a mixture); all have the same output width.
        consumers: qualified names of the Linear/Conv layers reading the units (one per task
            head for a shared representation; empty if none is found).

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> find_hidden_layers(net)[0]
        HiddenLayer(name='0', activation='1', sources=('0',), consumers=('2',))
    """

    name: str
    activation: str
    sources: tuple[str, ...]
    consumers: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """The first source layer (the only one unless the units mix several layers)."""
        return self.sources[0]

    def num_units(self, module: nn.Module) -> int:
        """Number of units (output features or channels) of the source layers."""
        return _out_width(module.get_submodule(self.source))

    def unit_view(self, module: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        """The activation as ``(*batch, units, positions)``.

        A Linear unit has one position; a conv unit has one per spatial location, whether the
        activation keeps the conv layout ``(*batch, C, *spatial)`` or is flattened
        channel-major to ``(*batch, C * prod(spatial))``.

        Args:
            module: the root module this layer belongs to.
            activation: the probed activation.

        Returns:
            A view of ``activation``.

        Raises:
            ValueError: if the activation's width is not a multiple of the number of units.
        """
        units = self.num_units(module)
        src = module.get_submodule(self.source)
        if isinstance(src, _CONV_TYPES):
            spatial = len(src.kernel_size)
            if activation.ndim >= spatial + 2 and activation.shape[-(spatial + 1)] == units:
                return activation.flatten(-spatial)
        elif activation.shape[-1] == units:
            return activation.unsqueeze(-1)
        if activation.ndim < 2 or activation.shape[-1] % units:
            raise ValueError(
                f"the activation of hidden layer {self.name!r} has shape "
                f"{tuple(activation.shape)}, which does not hold {units} units of its sources "
                f"{list(self.sources)}"
            )
        return activation.unflatten(-1, (units, -1))

    def unit_abs_mean(self, module: nn.Module, activation: torch.Tensor) -> torch.Tensor:
        """Per-sample mean ``|h|`` of each unit, ``(N, units)`` with ``N`` the flattened batch.

        Raises:
            ValueError: if the batch is empty or the activation does not hold the units.
        """
        if activation.numel() == 0 or activation.shape[0] == 0:
            raise ValueError(
                f"activation batch is empty (shape {tuple(activation.shape)}): need a batch of "
                ">= 1 sample"
            )
        view = self.unit_view(module, activation)
        return view.abs().mean(-1).reshape(-1, view.shape[-2])

    def alive(self, masks: Mapping[str, torch.Tensor], units: int) -> torch.Tensor:
        """Units with at least one active incoming connection in some source, ``(units,)``."""
        alive = torch.zeros(units, dtype=torch.bool)
        for source in self.sources:
            alive |= incoming_alive(masks, source, units)
        return alive


def _out_width(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _in_width(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def _readable(name: str) -> str:
    parts = [p for p in name.split(".") if p != "module"]
    return ".".join(parts) if parts else name


def _qualify(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _can_read(layer: nn.Module, units: int, source: nn.Module) -> bool:
    if isinstance(layer, nn.Linear):
        return layer.in_features >= units
    return layer.in_channels >= units and not isinstance(source, nn.Linear)


def _declared_sources(module: nn.Module) -> dict[str, tuple[str, ...]]:
    """``{qualified activation name: qualified source names}`` that submodules declare."""
    declared: dict[str, tuple[str, ...]] = {}
    for prefix, sub in module.named_modules():
        hook = getattr(sub, "hidden_layer_sources", None)
        if callable(hook):
            for act, sources in hook().items():
                declared[_qualify(prefix, act)] = tuple(_qualify(prefix, s) for s in sources)
    return declared


def _first_layer(module: nn.Module, prefix: str) -> tuple[str, nn.Module] | None:
    return next(
        (
            (_qualify(prefix, n), m)
            for n, m in module.named_modules()
            if isinstance(m, _LAYER_TYPES)
        ),
        None,
    )


def _branch_siblings(module: nn.Module, first: str, activation: str) -> list[str]:
    """The first layer of every other branch when ``first`` opens a branch of a ModuleList.

    The deepest ``nn.ModuleList`` holding ``first`` is taken, unless it also holds
    ``activation`` (then the units stay inside one branch): its branches run side by side on
    the same input (per-task heads).
    """
    parts = first.split(".")
    layer = module.get_submodule(first)
    for depth in range(len(parts) - 1, -1, -1):
        container = ".".join(parts[:depth])
        branches = module.get_submodule(container)
        if not isinstance(branches, nn.ModuleList):
            continue
        if not container or activation.startswith(f"{container}."):
            return []
        branch = _qualify(container, parts[depth])
        opening = _first_layer(module.get_submodule(branch), branch)
        if opening is None or opening[0] != first:
            return []
        siblings = []
        for index, child in branches.named_children():
            name = _qualify(container, index)
            other = _first_layer(child, name)
            if (
                name != branch
                and other is not None
                and type(other[1]) is type(layer)
                and _in_width(other[1]) == _in_width(layer)
            ):
                siblings.append(other[0])
        return siblings
    return []


def find_hidden_layers(module: nn.Module) -> list[HiddenLayer]:
    """Find the hidden layers of ``module`` with the rule of :mod:`.probes`.

    Args:
        module: any ``nn.Module`` (``TensorDictModule`` and ``ProbabilisticActor`` included).

    Returns:
        The hidden layers in ``named_modules()`` order (possibly empty).

    Raises:
        ValueError: if a declared mixture's sources differ in width.

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(
        ...     nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 8), nn.Tanh(),
        ...     nn.Linear(8, 2),
        ... )
        >>> [(h.name, h.consumers) for h in find_hidden_layers(net)]
        [('0', ('3',)), ('3', ('5',))]

        Every task head reads the shared representation:

        >>> from torchrl_sparse.modules import make_minigrid_network
        >>> layers = find_hidden_layers(make_minigrid_network("MT3", 7, arch="moe"))
        >>> layers[4].sources
        ('encoder.experts.0.conv.4', 'encoder.experts.1.conv.4')
        >>> layers[4].consumers
        ('head.heads.0.0', 'head.heads.1.0', 'head.heads.2.0')
    """
    named = list(module.named_modules())
    declared = _declared_sources(module)
    found: list[HiddenLayer] = []
    for i, (act_name, act) in enumerate(named):
        if not isinstance(act, ACTIVATION_TYPES):
            continue
        if act_name in declared:
            sources = declared[act_name]
        else:
            src_name = next(
                (n for n, m in reversed(named[:i]) if isinstance(m, _LAYER_TYPES)),
                None,
            )
            if src_name is None:
                continue
            sources = (src_name,)
        if any(set(h.sources) & set(sources) for h in found):
            # a second activation after the same layer (e.g. ReLU then Tanh) adds nothing new
            continue
        src = module.get_submodule(sources[0])
        units = _out_width(src)
        widths = {s: _out_width(module.get_submodule(s)) for s in sources}
        if len(set(widths.values())) > 1:
            raise ValueError(f"the sources of activation {act_name!r} differ in width: {widths}")
        first = next(
            (
                n
                for n, m in named[i + 1 :]
                if isinstance(m, _LAYER_TYPES) and _can_read(m, units, src)
            ),
            None,
        )
        consumers = () if first is None else (first, *_branch_siblings(module, first, act_name))
        name = _readable(sources[0] if len(sources) == 1 else act_name)
        found.append(HiddenLayer(name, act_name, sources, consumers))
    return found


def run_module(module: nn.Module, batch: Any) -> Any:
    """Run ``module`` on a batch: a TensorDict for TensorDict modules, else the raw input.

    The TensorDict is shallow-copied so the caller's batch is not written to.

    Args:
        module: the module to run.
        batch: a ``TensorDictBase`` or a tensor (or anything ``module`` accepts).

    Returns:
        What ``module`` returns.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> run_module(nn.Linear(3, 2), torch.zeros(4, 3)).shape
        torch.Size([4, 2])
    """
    if isinstance(batch, TensorDictBase):
        return module(batch.copy())
    return module(batch)


class ActivationProbe:
    """Context manager that records the hidden activations of a module during a forward pass.

    Hooks are registered on entry and always removed on exit (also on error), so the module is
    left exactly as it was.

    Args:
        module: any ``nn.Module`` or ``TensorDictModule``.
        layers: the hidden layers to probe; ``None`` finds them with :func:`find_hidden_layers`.

    Raises:
        ValueError: if the module has no hidden layer to probe.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> with ActivationProbe(net) as probe:
        ...     _ = net(torch.randn(16, 4))
        >>> probe.activations["0"].shape
        torch.Size([16, 8])
        >>> len(net[1]._forward_hooks)
        0
    """

    def __init__(self, module: nn.Module, layers: Sequence[HiddenLayer] | None = None) -> None:
        self.module = module
        self.layers: list[HiddenLayer] = (
            list(layers) if layers is not None else find_hidden_layers(module)
        )
        if not self.layers:
            raise ValueError(
                f"{type(module).__name__} has no hidden layer to probe: expected at least one "
                f"activation module ({', '.join(t.__name__ for t in ACTIVATION_TYPES[:4])}, ...) "
                "after a Linear/Conv layer."
            )
        self.activations: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            self.activations[name] = out.detach()

        return hook

    def __enter__(self) -> ActivationProbe:
        self.activations = {}
        for layer in self.layers:
            act = self.module.get_submodule(layer.activation)
            self._handles.append(act.register_forward_hook(self._hook(layer.name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __iter__(self) -> Iterator[tuple[HiddenLayer, torch.Tensor]]:
        """Iterate over ``(layer, activation)`` pairs of the last recorded pass."""
        for layer in self.layers:
            if layer.name in self.activations:
                yield layer, self.activations[layer.name]

    @classmethod
    def capture(
        cls,
        module: nn.Module,
        batch: Any,
        layers: Sequence[HiddenLayer] | None = None,
    ) -> ActivationProbe:
        """Run ``module`` on ``batch`` without gradients and return the filled probe.

        Args:
            module: the module to probe.
            batch: a TensorDict (TensorDict modules) or the module's input tensor.
            layers: optional explicit hidden layers.

        Returns:
            The probe, with :attr:`activations` filled.

        Examples:
            >>> import torch
            >>> from torch import nn
            >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
            >>> sorted(ActivationProbe.capture(net, torch.randn(3, 4)).activations)
            ['0']
        """
        probe = cls(module, layers)
        with probe, torch.no_grad():
            run_module(module, batch)
        return probe
