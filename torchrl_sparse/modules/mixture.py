"""Task-weighted mixtures of experts: MoE and MOORE (orthogonal experts)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["MOORE", "MixtureOfExperts", "MoE", "gram_schmidt"]


def gram_schmidt(experts: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Orthonormalise ``k`` expert outputs per sample with (classical) Gram-Schmidt.

    The first vector is normalised; from each next one the projections on the basis built so far
    are subtracted and the rest is normalised. ``eps`` is added to every norm so that a zero or
    linearly dependent expert output gives a (near) zero vector instead of NaNs.

    Args:
        experts: ``[..., k, d]`` tensor, ``k <= d``.
        eps: added to the norms for numerical safety.

    Returns:
        ``[..., k, d]`` tensor whose ``k`` rows are orthonormal for every sample.

    Examples:
        >>> basis = gram_schmidt(torch.randn(5, 3, 16))
        >>> gram = basis @ basis.transpose(-1, -2)
        >>> torch.allclose(gram, torch.eye(3).expand(5, 3, 3), atol=1e-5)
        True
    """
    return torch.stack(_orthonormalise(list(experts.unbind(-2)), eps), dim=-2)


def _orthonormalise(vectors: list[torch.Tensor], eps: float) -> list[torch.Tensor]:
    """Gram-Schmidt over a list of ``[..., d]`` tensors (fused ops: fewer temporaries)."""
    basis: list[torch.Tensor] = []
    for v in vectors:
        for b in basis:
            v = torch.addcmul(v, torch.linalg.vecdot(v, b).unsqueeze(-1), b, value=-1)
        basis.append(v / (torch.linalg.vector_norm(v, dim=-1, keepdim=True) + eps))
    return basis


class MixtureOfExperts(nn.Module):
    """``tanh(sum_j w_j(task) * U_j(x))`` with task weights from a bias-free linear layer.

    ``w = Linear(num_tasks, k, bias=False)(one_hot)`` (no softmax, as in MOORE). With
    ``orthogonal=True`` the ``k`` expert outputs are orthonormalised per sample by
    :func:`gram_schmidt` before mixing (MOORE); otherwise they are mixed as they are (MoE).

    The ``tanh`` is the parameter-free submodule ``activation``, so plasticity probes see the
    shared representation; :meth:`hidden_layer_sources` tells them that its units come from
    the last layer of every expert (see :mod:`torchrl_sparse.plasticity.probes`).

    Args:
        make_expert: called ``num_experts`` times to build freshly initialised experts, each
            mapping ``[..., *in]`` to ``[..., d]``.
        num_experts: ``k``, the number of experts.
        num_tasks: length of the task one-hot.
        orthogonal: Gram-Schmidt the expert outputs (MOORE).
        eps: numerical epsilon of the orthogonalisation.
        layer_norm: ``LayerNorm`` on the mixed representation, after the ``tanh`` (needs
            experts with an ``out_features`` attribute, as :class:`MiniGridCNN` and
            :class:`MLP`).

    Raises:
        ValueError: if ``num_experts < 1`` or ``num_tasks < 1``.

    Examples:
        >>> from torchrl_sparse.modules import MiniGridCNN
        >>> moore = MixtureOfExperts(MiniGridCNN, num_experts=2, num_tasks=3, orthogonal=True)
        >>> onehot = torch.eye(3)[torch.tensor([0, 2])]
        >>> moore(torch.zeros(2, 3, 7, 7), onehot).shape
        torch.Size([2, 1024])
    """

    def __init__(
        self,
        make_expert: Callable[[], nn.Module],
        num_experts: int,
        num_tasks: int,
        orthogonal: bool = False,
        eps: float = 1e-8,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if num_experts < 1:
            raise ValueError(f"num_experts (k) must be >= 1, got {num_experts}.")
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}.")
        self.experts = nn.ModuleList(make_expert() for _ in range(num_experts))
        self.task_weights = nn.Linear(num_tasks, num_experts, bias=False)
        # registered last and parameter-free: parameter order and state_dict keys are unchanged
        self.activation = nn.Tanh()
        self.norm = nn.LayerNorm(self.experts[0].out_features) if layer_norm else nn.Identity()
        self.orthogonal = orthogonal
        self.eps = eps

    @property
    def num_experts(self) -> int:
        """Number of experts ``k``."""
        return len(self.experts)

    def hidden_layer_sources(self) -> dict[str, list[str]]:
        """The layers producing the units of the mixed representation, for plasticity probes.

        Returns:
            ``{"activation": [the last Linear/Conv of every expert]}`` (names relative to this
            module): unit ``i`` of the representation mixes unit ``i`` of every expert.

        Examples:
            >>> from torchrl_sparse.modules import MiniGridCNN
            >>> MixtureOfExperts(MiniGridCNN, 2, 3).hidden_layer_sources()
            {'activation': ['experts.0.conv.4', 'experts.1.conv.4']}
        """
        layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        sources = []
        for j, expert in enumerate(self.experts):
            names = [n for n, m in expert.named_modules() if isinstance(m, layers)]
            if names:
                sources.append(f"experts.{j}.{names[-1]}" if names[-1] else f"experts.{j}")
        return {"activation": sources}

    def expert_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Expert outputs ``[..., k, d]``, orthonormalised per sample if ``orthogonal``."""
        return torch.stack(self._expert_list(x), dim=-2)

    def _expert_list(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [expert(x) for expert in self.experts]
        return _orthonormalise(outputs, self.eps) if self.orthogonal else outputs

    def forward(self, x: torch.Tensor, task_onehot: torch.Tensor) -> torch.Tensor:
        weights = self.task_weights(task_onehot).unsqueeze(-1)
        # Expert outputs stay a list (no [..., k, d] stack) and are mixed with fused
        # multiply-adds: these elementwise passes dominate MOORE's cost on CPU.
        outputs = self._expert_list(x)
        mixed = outputs[0] * weights[..., 0, :]
        for j in range(1, len(outputs)):
            mixed = torch.addcmul(mixed, outputs[j], weights[..., j, :])
        return self.norm(self.activation(mixed))


class MoE(MixtureOfExperts):
    """Mixture of experts without orthogonalisation (see :class:`MixtureOfExperts`).

    Examples:
        >>> from torchrl_sparse.modules import MLP
        >>> moe = MoE(lambda: MLP(39, [400, 400, 400], activate_last=False), 4, 10)
        >>> moe(torch.zeros(2, 39), torch.eye(10)[:2]).shape
        torch.Size([2, 400])
    """

    def __init__(
        self, make_expert: Callable[[], nn.Module], num_experts: int, num_tasks: int
    ) -> None:
        super().__init__(make_expert, num_experts, num_tasks, orthogonal=False)


class MOORE(MixtureOfExperts):
    """Mixture of orthogonal experts, Hendawy et al. 2024 (see :class:`MixtureOfExperts`).

    Examples:
        >>> from torchrl_sparse.modules import MLP
        >>> moore = MOORE(lambda: MLP(39, [400, 400, 400], activate_last=False), 4, 10)
        >>> moore.expert_outputs(torch.randn(2, 39)).shape
        torch.Size([2, 4, 400])
    """

    def __init__(
        self,
        make_expert: Callable[[], nn.Module],
        num_experts: int,
        num_tasks: int,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(make_expert, num_experts, num_tasks, orthogonal=True, eps=eps)
