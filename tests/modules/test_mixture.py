"""MoE and MOORE: orthogonality, equivalence without orthogonalisation, numerical safety."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_sparse.modules import MLP, MOORE, MiniGridCNN, MixtureOfExperts, MoE, gram_schmidt


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    k=st.integers(1, 6), d=st.integers(12, 64), batch=st.integers(1, 8), seed=st.integers(0, 999)
)
def test_gram_schmidt_is_orthonormal(k: int, d: int, batch: int, seed: int) -> None:
    # d >= 2k keeps random experts well conditioned; the eps only matters near degeneracy.
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, k, d, dtype=torch.float64, generator=gen)
    basis = gram_schmidt(x)
    gram = basis @ basis.transpose(-1, -2)
    assert torch.allclose(gram, torch.eye(k, dtype=torch.float64).expand_as(gram), atol=1e-6)
    # The basis spans the same space: the first vector keeps its direction.
    assert torch.allclose(basis[:, 0], x[:, 0] / x[:, 0].norm(dim=-1, keepdim=True))


def test_moore_gram_matrix_is_identity_per_sample() -> None:
    torch.manual_seed(0)
    moore = MixtureOfExperts(MiniGridCNN, num_experts=4, num_tasks=7, orthogonal=True)
    obs = torch.randint(0, 11, (16, 3, 7, 7)).float()
    u = moore.expert_outputs(obs)
    gram = u @ u.transpose(-1, -2)
    assert torch.allclose(gram, torch.eye(4).expand(16, 4, 4), atol=1e-4)


def test_moe_equals_moore_without_orthogonalisation() -> None:
    torch.manual_seed(0)

    def expert() -> MLP:
        return MLP(39, [64, 64], activate_last=False)

    moore = MOORE(expert, 3, 10)
    moe = MoE(expert, 3, 10)
    moe.load_state_dict(moore.state_dict())
    x, onehot = torch.randn(5, 39), torch.eye(10)[torch.tensor([0, 3, 3, 9, 1])]
    moore.orthogonal = False
    assert torch.equal(moe(x, onehot), moore(x, onehot))
    # And the MoE formula: tanh(sum_j w_j U_j), task weights linear without softmax.
    w = onehot @ moe.task_weights.weight.T
    manual = torch.tanh(sum(w[:, j : j + 1] * moe.experts[j](x) for j in range(3)))
    assert torch.allclose(moe(x, onehot), manual, atol=1e-6)


def test_moore_forward_mixes_its_orthonormal_expert_outputs() -> None:
    torch.manual_seed(0)
    moore = MixtureOfExperts(MiniGridCNN, num_experts=3, num_tasks=5, orthogonal=True)
    obs = torch.randint(0, 11, (8, 3, 7, 7)).float()
    onehot = torch.eye(5)[torch.tensor([0, 4, 4, 1, 2, 3, 0, 1])]
    w = moore.task_weights(onehot)
    manual = torch.tanh((w.unsqueeze(-1) * moore.expert_outputs(obs)).sum(-2))
    assert torch.allclose(moore(obs, onehot), manual, atol=1e-6)


def test_epsilon_keeps_degenerate_experts_finite() -> None:
    x = torch.zeros(2, 3, 8)
    x[:, 1] = torch.randn(2, 8)
    x[:, 2] = 2 * x[:, 1]  # linearly dependent
    basis = gram_schmidt(x)
    assert torch.isfinite(basis).all()
    assert basis[:, 0].abs().max() == 0


def test_bad_num_experts() -> None:
    with pytest.raises(ValueError, match="num_experts \\(k\\) must be >= 1"):
        MOORE(MiniGridCNN, 0, 3)


def test_representation_module_changes_no_parameter_or_key() -> None:
    # The tanh after mixing is a probed, parameter-free submodule registered last: parameter
    # order (optimizer state), state_dict keys (checkpoints) and initial values are unchanged.
    torch.manual_seed(0)
    moore = MixtureOfExperts(MiniGridCNN, num_experts=2, num_tasks=3, orthogonal=True)
    expert_keys = [
        f"experts.{j}.conv.{i}.{p}" for j in range(2) for i in (0, 2, 4) for p in ("weight", "bias")
    ]
    assert [n for n, _ in moore.named_parameters()] == [*expert_keys, "task_weights.weight"]
    assert list(moore.state_dict()) == [*expert_keys, "task_weights.weight"]
    assert isinstance(moore.activation, torch.nn.Tanh)
    torch.manual_seed(0)
    copy = MixtureOfExperts(MiniGridCNN, num_experts=2, num_tasks=3, orthogonal=True)
    copy.load_state_dict(moore.state_dict(), strict=True)
    for a, b in zip(moore.parameters(), copy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert moore.hidden_layer_sources() == {"activation": ["experts.0.conv.4", "experts.1.conv.4"]}
    sac = MoE(lambda: MLP(39, [64, 64], activate_last=False), 3, 10)
    assert sac.hidden_layer_sources() == {"activation": [f"experts.{j}.2" for j in range(3)]}
