"""Activation probes: find the hidden layers of any module and capture their activations.

The rule for a *hidden layer* is the same everywhere in :mod:`torchrl_sparse.plasticity`:

* The probe point is the output of an **activation module** (``nn.ReLU``, ``nn.Tanh``,
  ``nn.ELU``, ... see :data:`ACTIVATION_TYPES`), i.e. the post-nonlinearity value of a unit.
  Normalisation layers (``nn.LayerNorm``) are not probe points: in ``Linear-LayerNorm-ReLU``
  and ``Linear-ReLU-LayerNorm`` alike the ``ReLU`` is probed.
* Each activation is mapped to its **source layer**: the closest ``nn.Linear``/``nn.ConvNd``
  that precedes it in ``module.named_modules()`` order. The source layer owns the incoming
  weights (used for masks and ReDo). An activation without a source layer, or whose width does
  not match the source layer's output width, is not a hidden layer.
* The **next layer** (outgoing weights, used by ReDo) is the closest ``Linear``/``ConvNd``
  after the activation whose input width is compatible (``in_features`` equal to, or a multiple
  of, the number of units when a conv output is flattened; ``in_channels`` equal for convs).
* The output layer is never probed because no activation module follows it. Activations
  applied functionally (``torch.tanh(x)`` in ``forward``) are invisible to the rule; pass
  explicit :class:`HiddenLayer` entries (or use a feature hook) for them.

A Linear unit is one output feature (last dimension); a conv unit is one output channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

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
    """One hidden layer: where it is probed, which layer feeds it and which layer reads it.

    Attributes:
        name: readable layer name (the source layer's qualified name without ``module``
            wrapper segments), used in metric keys.
        activation: qualified name of the probed activation module.
        source: qualified name of the Linear/Conv layer producing the units.
        next: qualified name of the Linear/Conv layer reading the units, or ``None``.

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> find_hidden_layers(net)[0]
        HiddenLayer(name='0', activation='1', source='0', next='2')
    """

    name: str
    activation: str
    source: str
    next: str | None

    def unit_dim(self, module: nn.Module) -> int:
        """Dimension of the activation tensor that indexes units (from the end).

        Args:
            module: the root module this layer belongs to.

        Returns:
            ``-1`` for Linear sources, ``-(d + 1)`` for a ``d``-dimensional convolution.
        """
        src = module.get_submodule(self.source)
        if isinstance(src, _CONV_TYPES):
            return -(len(src.kernel_size) + 1)
        return -1

    def num_units(self, module: nn.Module) -> int:
        """Number of units (output features or channels) of the source layer."""
        return _out_width(module.get_submodule(self.source))


def _out_width(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _readable(name: str) -> str:
    parts = [p for p in name.split(".") if p != "module"]
    return ".".join(parts) if parts else name


def _compatible_next(layer: nn.Module, units: int, source: nn.Module) -> bool:
    if isinstance(layer, nn.Linear):
        if isinstance(source, nn.Linear):
            return layer.in_features == units
        return layer.in_features % units == 0
    return layer.in_channels == units and not isinstance(source, nn.Linear)


def find_hidden_layers(module: nn.Module) -> list[HiddenLayer]:
    """Find the hidden layers of ``module`` with the rule of :mod:`.probes`.

    Args:
        module: any ``nn.Module`` (``TensorDictModule`` and ``ProbabilisticActor`` included).

    Returns:
        The hidden layers in ``named_modules()`` order (possibly empty).

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(
        ...     nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 8), nn.Tanh(),
        ...     nn.Linear(8, 2),
        ... )
        >>> [(h.name, h.next) for h in find_hidden_layers(net)]
        [('0', '3'), ('3', '5')]
    """
    named = list(module.named_modules())
    found: list[HiddenLayer] = []
    for i, (act_name, act) in enumerate(named):
        if not isinstance(act, ACTIVATION_TYPES):
            continue
        src_name = next(
            (n for n, m in reversed(named[:i]) if isinstance(m, _LAYER_TYPES)),
            None,
        )
        if src_name is None:
            continue
        src = module.get_submodule(src_name)
        units = _out_width(src)
        if any(h.source == src_name for h in found):
            # a second activation after the same layer (e.g. ReLU then Tanh) adds nothing new
            continue
        nxt = next(
            (
                n
                for n, m in named[i + 1 :]
                if isinstance(m, _LAYER_TYPES) and _compatible_next(m, units, src)
            ),
            None,
        )
        found.append(HiddenLayer(_readable(src_name), act_name, src_name, nxt))
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
