"""Every private API of our dependencies that torchrl_sparse relies on, in one place.

Checked against torch 2.13.0, torchrl 0.14.1 and tensordict 0.14.3 (the versions in
``constraints.txt``). When upgrading one of them, review this file: ``tests/test_compat.py``
fails when an entry disappears.

Used through the helpers below:

- ``tensordict.TensorDict._new_unsafe``: builds a TensorDict without validating every key. The
  MiniGrid suite builds one per step from fresh CPU tensors of the declared shapes; the public
  constructor's checks are a large part of a step's fixed cost.
- ``torch._C._functorch.is_functorch_wrapped_tensor``: tells whether a tensor is being
  transformed by ``torch.func`` (``vmap``/``grad``), where ``MultiHead`` cannot route samples
  by task with data-dependent indexing.
- ``torchrl.collectors.Collector._carrier``: the step data a collector carries into its next
  rollout. TorchRL's ``Collector.state_dict`` does not hold it; a resumed run needs it to
  continue the same episodes.

Overridden (hooks of a parent class, not called through a helper):

- ``torchrl.envs.EnvBase._complete_done``: the MiniGrid suite writes every done entry at its
  final shape and skips TorchRL's per-step completion.
- ``torchrl.objectives.SACLoss._compute_target_v2`` and ``SACLoss._alpha_loss``:
  ``MultiTaskSACLoss`` gives each sample its task's entropy temperature, which ``SACLoss``
  holds as one scalar.
"""

from __future__ import annotations

from typing import Any

import torch
import torchrl
from tensordict import TensorDict, TensorDictBase

__all__ = [
    "OVERRIDDEN",
    "collector_carrier",
    "is_functorch_transformed",
    "new_tensordict_unchecked",
]

#: ``(class, private method)`` pairs our subclasses override or call.
OVERRIDDEN: tuple[tuple[str, str], ...] = (
    ("torchrl.envs.EnvBase", "_complete_done"),
    ("torchrl.objectives.SACLoss", "_compute_target_v2"),
    ("torchrl.objectives.SACLoss", "_alpha_loss"),
)


def new_tensordict_unchecked(
    source: dict[str, torch.Tensor], batch_size: torch.Size, device: torch.device
) -> TensorDictBase:
    """A TensorDict of ``source`` without per-key validation (tensors must already fit).

    Examples:
        >>> td = new_tensordict_unchecked({"x": torch.zeros(3, 1)}, torch.Size([3]), "cpu")
        >>> td.batch_size
        torch.Size([3])
    """
    return TensorDict._new_unsafe(source, batch_size=batch_size, device=device)


def is_functorch_transformed(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is wrapped by a ``torch.func`` transform (``vmap``, ``grad``).

    Examples:
        >>> is_functorch_transformed(torch.zeros(2))
        False
        >>> torch.func.vmap(lambda x: torch.tensor(is_functorch_transformed(x)))(torch.zeros(2))
        tensor([True, True])
    """
    return torch._C._functorch.is_functorch_wrapped_tensor(tensor)


def collector_carrier(collector: Any) -> TensorDictBase:
    """The step data ``collector`` carries into its next rollout (updated in place to restore).

    Raises:
        RuntimeError: if this torchrl's collector keeps no carrier.
    """
    carrier = getattr(collector, "_carrier", None)
    if carrier is None:
        raise RuntimeError(
            "Cannot checkpoint the collector: torchrl's Collector has no _carrier "
            f"(torchrl {torchrl.__version__}); torchrl_sparse was checked against torchrl 0.14."
        )
    return carrier
