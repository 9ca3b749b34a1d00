"""Every private API of our dependencies that torchrl_sparse relies on, in one place.

Checked against torch 2.13.0, torchrl 0.14.1, tensordict 0.14.3 and lightning 2.6.6 (the
versions in ``constraints.txt``). When upgrading one of them, review this file:
``tests/test_compat.py`` fails when an entry disappears.

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
- Lightning's checkpoint layout of the fit loop (``loops.fit_loop``: ``epoch_progress`` and
  ``state_dict.combined_loader``): Lightning restores the training data loader's state only
  when it resumes inside an epoch, and the CLI restores it for a run continued past the end of
  its epoch (a finished run given a longer training length, or one stopped by SIGINT).

Overridden (hooks of a parent class, not called through a helper):

- ``torchrl.envs.EnvBase._complete_done``: the MiniGrid suite writes every done entry at its
  final shape and skips TorchRL's per-step completion.
- ``torchrl.objectives.SACLoss._compute_target_v2`` and ``SACLoss._alpha_loss``:
  ``MultiTaskSACLoss`` gives each sample its task's entropy temperature, which ``SACLoss``
  holds as one scalar.
- ``lightning.pytorch.cli.LightningCLI._parse_ckpt_path``: with ``--ckpt_path FILE``,
  LightningCLI replaces the model's configuration by the checkpoint's hyperparameters, so a
  recipe would silently train whatever the checkpoint holds. The ``torchrl-sparse`` CLI keeps
  the recipe's model and refuses a checkpoint of other settings instead.
"""

from __future__ import annotations

from typing import Any

import torch
import torchrl
from tensordict import TensorDict, TensorDictBase

__all__ = [
    "OVERRIDDEN",
    "collector_carrier",
    "ended_epoch_loader_states",
    "is_functorch_transformed",
    "new_tensordict_unchecked",
]

#: ``(class, private method)`` pairs our subclasses override or call.
OVERRIDDEN: tuple[tuple[str, str], ...] = (
    ("torchrl.envs.EnvBase", "_complete_done"),
    ("torchrl.objectives.SACLoss", "_compute_target_v2"),
    ("torchrl.objectives.SACLoss", "_alpha_loss"),
    ("lightning.pytorch.cli.LightningCLI", "_parse_ckpt_path"),
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


def env_output(
    source: dict[str, torch.Tensor], batch_size: torch.Size, device: torch.device
) -> TensorDictBase:
    """An environment's step/reset output from fresh CPU tensors of the spec'd shapes and dtypes.

    On CPU the per-key validation of the TensorDict constructor, a large part of the fixed cost
    of a batched step, is skipped (:func:`new_tensordict_unchecked`); on another device the
    constructor moves the tensors there.

    Examples:
        >>> env_output({"x": torch.zeros(3, 1)}, torch.Size([3]), torch.device("cpu")).batch_size
        torch.Size([3])
    """
    if device.type == "cpu":
        return new_tensordict_unchecked(source, batch_size, device)
    return TensorDict(source, batch_size=batch_size, device=device)


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


def ended_epoch_loader_states(checkpoint: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The training data loaders' states of a checkpoint written after its epoch ended.

    Lightning restores them itself when it resumes inside an epoch (``None`` then): its
    ``FitLoop`` counts as restarting only while the checkpoint's epoch is unfinished.

    Raises:
        RuntimeError: if the checkpoint does not have the fit loop's layout of Lightning 2.x.

    Examples:
        >>> progress = {"ready": 1, "started": 1, "processed": 1, "completed": 1}
        >>> loops = {"fit_loop": {"epoch_progress": {"current": progress},
        ...                       "state_dict": {"combined_loader": [{"step": 4}]}}}
        >>> ended_epoch_loader_states({"loops": loops})
        [{'step': 4}]
    """
    try:
        fit_loop = checkpoint["loops"]["fit_loop"]
        current = fit_loop["epoch_progress"]["current"]
        ended = current["ready"] == current["started"] == current["processed"]
    except (KeyError, TypeError) as error:
        raise RuntimeError(
            f"The checkpoint has no fit-loop progress where Lightning 2.6 keeps it ({error!r}); "
            "torchrl_sparse was checked against lightning 2.6."
        ) from error
    return list(fit_loop.get("state_dict", {}).get("combined_loader", [])) if ended else None
