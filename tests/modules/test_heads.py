"""Multi-head selection by task id, in eager mode and under torch.func."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from torchrl_sparse.modules import MultiHead, make_ppo_actor, task_onehot


def test_each_sample_uses_its_task_head() -> None:
    torch.manual_seed(0)
    heads = MultiHead(4, 16, 3, hidden=8)
    x, task_id = torch.randn(10, 16), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 0, 3])
    out = heads(x, task_id)
    for i in range(10):
        assert torch.allclose(out[i], heads.heads[int(task_id[i])](x[i]), atol=1e-6)


def test_grouped_and_interleaved_batches_give_the_same_values_and_gradients() -> None:
    """Task-sorted batches take the split path, others the argsort path: same results."""
    torch.manual_seed(0)
    heads = MultiHead(3, 16, 5, hidden=8)
    x, task_id = torch.randn(12, 16), torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    order = torch.randperm(12)
    results = []
    for inputs, tasks in ((x, task_id), (x[order], task_id[order])):
        inputs = inputs.clone().requires_grad_()
        heads.zero_grad()
        out = heads(inputs, tasks)
        (out * torch.arange(5.0)).sum().backward()
        grads = {n: p.grad.clone() for n, p in heads.named_parameters()}
        results.append((out, inputs.grad, grads))
    (out, x_grad, grads), (out_p, x_grad_p, grads_p) = results
    inverse = order.argsort()
    torch.testing.assert_close(out_p[inverse], out)
    torch.testing.assert_close(x_grad_p[inverse], x_grad)
    for name, value in grads.items():
        torch.testing.assert_close(grads_p[name], value)
    assert heads(x[:0], task_id[:0]).shape == (0, 5)


def test_routing_matches_gather_under_vmap() -> None:
    torch.manual_seed(0)
    heads = MultiHead(3, 16, 5)
    x, task_id = torch.randn(6, 2, 16), torch.tensor([[0, 1], [2, 2], [1, 0]] * 2)
    eager = heads(x, task_id)
    batched = vmap(heads)(x, task_id)
    assert torch.allclose(eager, batched, atol=1e-6)


def test_per_sample_gradients_only_touch_the_task_head() -> None:
    heads = MultiHead(3, 4, 2)
    params = dict(heads.named_parameters())

    def loss(p: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return functional_call(heads, p, (x[None], t[None])).sum()

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, torch.randn(3, 4), torch.arange(3))
    for task in range(3):
        for head in range(3):
            touched = grads[f"heads.{head}.weight"][task].abs().sum() > 0
            assert touched == (task == head)


def test_layers_are_plain_linear_and_conv_with_readable_names() -> None:
    actor = make_ppo_actor("MT3", arch="moore")
    names = {
        name.split("module.", 2)[-1]
        for name, m in actor.named_modules()
        if isinstance(m, nn.Linear | nn.Conv2d)
    }
    assert {"head.heads.2.0", "head.heads.2.2", "encoder.experts.1.conv.4"} <= names
    assert "encoder.task_weights" in names


def test_task_onehot() -> None:
    assert torch.equal(task_onehot(torch.tensor([2, 0]), 3), torch.eye(3)[[2, 0]])


def test_bad_input() -> None:
    with pytest.raises(IndexError, match=r"allowed: 0\.\.2"):
        MultiHead(3, 4, 2)(torch.randn(2, 4), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="num_tasks must be >= 1"):
        MultiHead(0, 4, 2)
