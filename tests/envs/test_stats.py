"""Tests of per-task aggregation."""

from __future__ import annotations

import pytest
import torch

from torchrl_sparse.envs import per_task_mean


def test_per_task_mean_with_mask() -> None:
    values = torch.tensor([[1.0], [2.0], [3.0], [5.0]])
    task_id = torch.tensor([0, 0, 1, 1])
    mask = torch.tensor([[True], [True], [False], [True]])
    out = per_task_mean(values, task_id, 3, mask)
    assert out[:2].tolist() == [1.5, 5.0]
    assert out[2].isnan()


def test_per_task_mean_bad_task_id() -> None:
    with pytest.raises(IndexError, match=r"0\.\.1"):
        per_task_mean(torch.ones(2), torch.tensor([0, 2]), 2)
