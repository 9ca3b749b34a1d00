import copy
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from torchrl_sparse.sparse import (
    ER,
    ERK,
    GMP,
    SET,
    ConstantSchedule,
    CubicSchedule,
    RigL,
    Sparsifier,
    SparsityGroup,
    StaticSparse,
    Uniform,
    flops_per_forward,
    num_active,
    preserves_zeros,
)

from .conftest import make_cnn_mlp, train_steps

OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.9, centered=True),
    # Not zero-preserving (its infinity norm gains eps): its state is masked every step.
    "adamax": lambda p: torch.optim.Adamax(p, lr=1e-2),
    "adam_fused": lambda p: torch.optim.Adam(p, lr=1e-2, fused=True),
}
METHODS = {
    "gmp": lambda: GMP(CubicSchedule(start=0, end=20, update_every=5)),
    "set": lambda: SET(zeta=0.3, schedule=ConstantSchedule(update_every=5)),
    "rigl": lambda: RigL(drop_fraction=0.3, schedule=ConstantSchedule(update_every=5, end=20)),
    "static": StaticSparse,
}


def assert_pruned_entries_zero(sparsifier: Sparsifier, optimizer: torch.optim.Optimizer) -> None:
    for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
        assert torch.all(target.param[~mask] == 0), target.name
        if target.param.grad is not None:
            assert torch.all(target.param.grad[~mask] == 0), target.name
        for key, value in optimizer.state[target.param].items():
            if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                assert torch.all(value[~mask] == 0), f"{target.name} optimizer state {key}"
        for copy_ in target.copies:
            assert torch.all(copy_[~mask] == 0), target.name


@given(
    sparsity=st.floats(0.0, 0.99),
    distribution=st.sampled_from(["uniform", "er", "erk"]),
    seed=st.integers(0, 1000),
)
@settings(max_examples=25, deadline=None)
def test_exact_counts_per_layer_static(sparsity: float, distribution: str, seed: int) -> None:
    model = make_cnn_mlp()
    dist = {"uniform": Uniform(), "er": ER(), "erk": ERK()}[distribution]
    sparsifier = Sparsifier(
        model, {"*": sparsity}, method=StaticSparse(), distribution=dist, seed=seed
    )
    shapes = [t.param.shape for t in sparsifier.targets]
    densities = dist.densities(shapes, sparsity)
    for target, mask, density in zip(sparsifier.targets, sparsifier.masks, densities, strict=True):
        assert int(mask.sum()) == num_active(density, mask.numel())
        assert int((target.param != 0).sum()) <= int(mask.sum())
    expected_kept = sum(num_active(d, s.numel()) for d, s in zip(densities, shapes, strict=True))
    total = sum(s.numel() for s in shapes)
    assert sparsifier.stats()["sparsity/total"] == pytest.approx(1 - expected_kept / total)
    # Rounding per layer keeps the global count within one weight per layer of the target.
    assert abs(expected_kept - (1 - sparsity) * total) <= len(shapes) / 2 + 1e-6


@given(sparsity=st.floats(0.0, 0.99), scope=st.sampled_from(["layer", "global"]))
@settings(max_examples=25, deadline=None)
def test_gmp_reaches_exact_final_counts(sparsity: float, scope: str) -> None:
    model = make_cnn_mlp()
    sparsifier = Sparsifier(
        model,
        {"*": sparsity},
        method=GMP(CubicSchedule(start=0, end=10, update_every=5)),
        scope=scope,
        total_steps=10,
    )
    for _ in range(10):
        sparsifier.step()
    total = sum(t.param.numel() for t in sparsifier.targets)
    kept = sum(int(m.sum()) for m in sparsifier.masks)
    if scope == "global":
        assert kept == round((1 - sparsity) * total)
    else:
        for mask in sparsifier.masks:
            assert int(mask.sum()) == num_active(1 - sparsity, mask.numel())


@pytest.mark.parametrize("optimizer_name", OPTIMIZERS)
@pytest.mark.parametrize("method_name", METHODS)
def test_pruned_entries_stay_zero(cnn_mlp, optimizer_name: str, method_name: str) -> None:
    optimizer = OPTIMIZERS[optimizer_name](cnn_mlp.parameters())
    sparsifier = Sparsifier(
        cnn_mlp, {"*": 0.8}, method=METHODS[method_name](), optimizer=optimizer, total_steps=30
    )
    previous = [m.clone() for m in sparsifier.masks]
    for _ in range(30):
        train_steps(cnn_mlp, optimizer, sparsifier, 1)
        assert_pruned_entries_zero(sparsifier, optimizer)
        # Between updates no pruned weight comes back; at updates only grown ones are nonzero
        # masks, and those start at zero (checked in test_regrown_*).
        if sparsifier.step_count % 5:
            assert all(torch.equal(a, b) for a, b in zip(previous, sparsifier.masks, strict=True))
        previous = [m.clone() for m in sparsifier.masks]


@pytest.mark.parametrize("method_name", ["set", "rigl"])
def test_regrown_weights_and_state_start_at_zero(cnn_mlp, method_name: str) -> None:
    optimizer = torch.optim.Adam(cnn_mlp.parameters(), lr=1e-2)
    sparsifier = Sparsifier(
        cnn_mlp, {"*": 0.8}, method=METHODS[method_name](), optimizer=optimizer, total_steps=30
    )
    train_steps(cnn_mlp, optimizer, sparsifier, 4)
    before = [m.clone() for m in sparsifier.masks]
    train_steps(cnn_mlp, optimizer, sparsifier, 1)  # step 5: an update
    grown_any = False
    for target, old, new in zip(sparsifier.targets, before, sparsifier.masks, strict=True):
        grown = new & ~old
        grown_any |= bool(grown.any())
        assert torch.all(target.param[grown] == 0)
        state = optimizer.state[target.param]
        assert torch.all(state["exp_avg"][grown] == 0)
        assert torch.all(state["exp_avg_sq"][grown] == 0)
        assert int(new.sum()) == int(old.sum())
    assert grown_any


def test_rigl_grows_where_dense_gradient_is_largest() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(4, 4, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.0)
    sparsifier = Sparsifier(
        layer,
        {"": 0.5},
        method=RigL(drop_fraction=0.25, schedule=ConstantSchedule(update_every=1)),
        optimizer=optimizer,
    )
    inactive = ~sparsifier.masks[0]
    # A loss whose gradient is largest at one known inactive position.
    target_row, target_col = [int(i) for i in inactive.nonzero()[0]]
    weight_grad = torch.zeros(4, 4)
    weight_grad[inactive] = 0.01
    weight_grad[target_row, target_col] = 10.0
    optimizer.zero_grad()
    (layer.weight * weight_grad).sum().backward()
    assert torch.all(layer.weight.grad[inactive] == 0)  # sparse gradient for the optimizer...
    optimizer.step()
    sparsifier.step()
    # ...but RigL saw the dense one: two drops (0.25 of 8), and the top-gradient entry grew.
    assert bool(sparsifier.masks[0][target_row, target_col])
    assert int(sparsifier.masks[0].sum()) == 8


def test_rigl_drop_fraction_decays_by_cosine() -> None:
    method = RigL(drop_fraction=0.3)
    Sparsifier(make_cnn_mlp(), {"*": 0.5}, method=method, total_steps=1000)
    assert method.drop_fraction(0) == pytest.approx(0.3)
    assert method.drop_fraction(375) == pytest.approx(0.15)
    assert method.drop_fraction(750) == pytest.approx(0.0)


def test_per_group_targets_and_exclusion(cnn_mlp) -> None:
    groups = [SparsityGroup(["0", "2"], 0.5), SparsityGroup("[57]", 0.9, exclude="7")]
    sparsifier = Sparsifier(cnn_mlp, groups, method=StaticSparse())
    stats = sparsifier.stats()
    assert stats["sparsity/0"] == pytest.approx(0.5, abs=0.01)
    assert stats["sparsity/5"] == pytest.approx(0.9, abs=0.001)
    assert "sparsity/7" not in stats


def test_bias_policies(cnn_mlp) -> None:
    optimizer = torch.optim.Adam(cnn_mlp.parameters(), lr=1e-2)
    removed = Sparsifier(
        cnn_mlp, {"*": 0.5}, method=StaticSparse(), bias="remove", optimizer=optimizer
    )
    train_steps(cnn_mlp, optimizer, removed, 3)
    for layer in (cnn_mlp[0], cnn_mlp[2], cnn_mlp[5], cnn_mlp[7]):
        assert torch.all(layer.bias == 0) and torch.all(layer.bias.grad == 0)
    removed.remove()

    model = make_cnn_mlp()
    pruned = Sparsifier(model, {"*": 0.5}, method=StaticSparse(), bias="prune")
    biases = [(t, m) for t, m in zip(pruned.targets, pruned.masks, strict=True) if t.kind == "bias"]
    assert len(biases) == 4
    for _target, mask in biases:
        assert int(mask.sum()) == num_active(0.5, mask.numel())


def test_flops_and_param_counts(cnn_mlp) -> None:
    sparsifier = Sparsifier(cnn_mlp, {"5": 0.75}, method=StaticSparse())
    flops = flops_per_forward(cnn_mlp, torch.zeros(1, 3, 7, 7), sparsifier=sparsifier)
    conv = 2 * (3 * 4 * 8 * 36 + 8 * 4 * 8 * 25)
    linear = 2 * (200 * 32 + 32 * 7)
    assert flops["sparsity/dense_flops"] == conv + linear
    assert flops["sparsity/sparse_flops"] == conv + 2 * (1600 + 32 * 7)
    stats = sparsifier.stats()
    dense = sum(p.numel() for p in cnn_mlp.parameters())
    assert stats["sparsity/dense_params"] == dense
    assert stats["sparsity/nonzero_params"] == dense - 4800


def test_deepcopy_and_dense_state_dict(cnn_mlp) -> None:
    optimizer = torch.optim.Adam(cnn_mlp.parameters(), lr=1e-2)
    sparsifier = Sparsifier(cnn_mlp, {"*": 0.9}, method=StaticSparse(), optimizer=optimizer)
    train_steps(cnn_mlp, optimizer, sparsifier, 2)
    clone = copy.deepcopy(cnn_mlp)
    for a, b in zip(clone.parameters(), cnn_mlp.parameters(), strict=True):
        assert torch.equal(a, b)
    dense = make_cnn_mlp(seed=1)
    dense.load_state_dict(cnn_mlp.state_dict())  # no mask entries, no renamed weights
    x = torch.randn(4, 3, 7, 7)
    assert torch.equal(dense(x), cnn_mlp(x))
    assert set(cnn_mlp.state_dict()) == set(make_cnn_mlp().state_dict())


@pytest.mark.parametrize("method_name", ["gmp", "set", "rigl"])
def test_resume_is_bitwise_identical(method_name: str) -> None:
    def build():
        model = make_cnn_mlp()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        sparsifier = Sparsifier(
            model,
            {"*": 0.8},
            method=METHODS[method_name](),
            optimizer=optimizer,
            total_steps=30,
            seed=3,
        )
        return model, optimizer, sparsifier

    model, optimizer, sparsifier = build()
    train_steps(model, optimizer, sparsifier, 12)
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sparsifier": sparsifier.state_dict(),
        },
        buffer,
    )
    train_steps(model, optimizer, sparsifier, 13)

    resumed_model, resumed_optimizer, resumed = build()
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=False)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed.load_state_dict(checkpoint["sparsifier"])
    train_steps(resumed_model, resumed_optimizer, resumed, 13)

    assert resumed.step_count == sparsifier.step_count == 25
    for a, b in zip(resumed.masks, sparsifier.masks, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(resumed_model.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_without_optimizer_step_masks_weights(cnn_mlp) -> None:
    sparsifier = Sparsifier(cnn_mlp, {"*": 0.5}, method=StaticSparse())
    with torch.no_grad():
        for p in cnn_mlp.parameters():
            p.add_(1.0)
    sparsifier.step()
    for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
        assert torch.all(target.param[~mask] == 0)


class ScaledSGD(torch.optim.SGD):
    """An optimizer whose constructor takes an argument its ``defaults`` do not hold."""

    def __init__(self, params, scale: float) -> None:
        super().__init__(params, lr=0.1 * scale)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: torch.optim.Adam(p), True),
        (lambda p: torch.optim.Adam(p, fused=True), True),
        (lambda p: torch.optim.AdamW(p, amsgrad=True), True),  # its defaults hold Adam's flags
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), True),
        (lambda p: torch.optim.Adagrad(p, initial_accumulator_value=0.1), True),
        (lambda p: torch.optim.Adamax(p), False),  # its infinity norm gains eps
        (lambda p: torch.optim.Rprop(p), False),  # its step sizes are clamped from below
        (lambda p: torch.optim.SparseAdam(p), False),  # cannot step on dense gradients
        (lambda p: ScaledSGD(p, scale=2.0), False),  # cannot be rebuilt: masked every step
    ],
    ids=["adam", "adam_fused", "adamw", "sgd", "adagrad", "adamax", "rprop", "sparse", "custom"],
)
def test_zero_preservation_is_classified_by_behaviour(make, expected: bool) -> None:
    params = [nn.Parameter(torch.ones(3, 5)), nn.Parameter(torch.ones(5))]
    rng = torch.get_rng_state()
    assert preserves_zeros(make(params)) is expected
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator is left alone
