"""Every bad input fails before any training step, naming the value and what is allowed."""

import pytest
import torch

from torchrl_sparse.sparse import (
    GMP,
    CubicSchedule,
    IterativeMagnitudePruning,
    RigL,
    Sparsifier,
    SparsityGroup,
    StaticSparse,
)

from .conftest import make_cnn_mlp


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, "0.5"])
def test_sparsity_outside_unit_interval(sparsity) -> None:
    with pytest.raises(ValueError, match=r"must be a float in \[0, 1\), got"):
        Sparsifier(make_cnn_mlp(), {"*": sparsity}, method=StaticSparse())


def test_glob_matching_nothing_lists_layers() -> None:
    with pytest.raises(ValueError, match=r"'critic\.\*' matches no prunable layer.*'5', '7'"):
        Sparsifier(make_cnn_mlp(), {"critic.*": 0.5})


def test_group_emptied_by_exclude() -> None:
    with pytest.raises(ValueError, match="selects no layer"):
        Sparsifier(make_cnn_mlp(), [SparsityGroup("5", 0.5, exclude="*")])


def test_layer_in_two_groups() -> None:
    with pytest.raises(ValueError, match="selected by group 0 and group 1"):
        Sparsifier(make_cnn_mlp(), {"*": 0.5, "5": 0.9})


def test_module_without_prunable_layer() -> None:
    with pytest.raises(ValueError, match="has no prunable layer"):
        Sparsifier(torch.nn.ReLU(), {"*": 0.5})


def test_unknown_bias_policy_and_scope() -> None:
    with pytest.raises(ValueError, match=r"bias must be one of \('dense', 'prune', 'remove'\)"):
        Sparsifier(make_cnn_mlp(), {"*": 0.5}, bias="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"scope must be one of \('layer', 'global'\)"):
        Sparsifier(make_cnn_mlp(), {"*": 0.5}, scope="network")  # type: ignore[arg-type]


def test_schedule_after_training_end() -> None:
    with pytest.raises(ValueError, match="after training ends"):
        Sparsifier(make_cnn_mlp(), {"*": 0.5}, method=GMP(CubicSchedule(0, 500)), total_steps=100)


def test_schedule_ending_before_start() -> None:
    with pytest.raises(ValueError, match=r"ends \(end=10\) before it starts \(start=50\)"):
        Sparsifier(make_cnn_mlp(), {"*": 0.5}, method=GMP(CubicSchedule(50, 10)), total_steps=100)


def test_optimizer_without_masked_parameters() -> None:
    model = make_cnn_mlp()
    optimizer = torch.optim.Adam(model[5].parameters())
    with pytest.raises(ValueError, match=r"does not hold the masked parameters \['0.weight'"):
        Sparsifier(model, {"*": 0.5}, method=StaticSparse(), optimizer=optimizer)


def test_checkpoint_from_another_architecture() -> None:
    source = Sparsifier(make_cnn_mlp(), {"*": 0.5}, method=StaticSparse())
    other = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    sink = Sparsifier(other, {"*": 0.5}, method=StaticSparse())
    with pytest.raises(
        ValueError,
        match=r"do not fit this model: missing \[\], unexpected \['5.weight', '7.weight'\]",
    ):
        sink.load_state_dict(source.state_dict())
    wider = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"shape \(checkpoint, model\) mismatches"):
        Sparsifier(wider, {"*": 0.5}, method=StaticSparse()).load_state_dict(sink.state_dict())


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: IterativeMagnitudePruning(prune_fraction=1.0), "prune_fraction must lie in"),
        (lambda: IterativeMagnitudePruning(rewind="best"), "rewind must be one of"),
        (lambda: RigL(drop_fraction=0.0), "zeta must lie in"),
    ],
)
def test_bad_method_arguments(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_step_must_be_positive() -> None:
    sparsifier = Sparsifier(make_cnn_mlp(), {"*": 0.5}, method=StaticSparse())
    with pytest.raises(ValueError, match="num_steps must be a positive int, got 0"):
        sparsifier.step(0)
