"""Tickets and baselines as tensors: pruning by magnitude, rewinding, rescaling, input masks."""

from __future__ import annotations

import pytest
import torch

from torchrl_sparse.lottery import (
    CONDITIONS,
    condition_weights,
    input_connections,
    magnitude_prune,
    rescale_to_dense_variance,
    sparsity,
)


def network(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "encoder.0.weight": torch.randn(16, 4, generator=g),
        "encoder.2.weight": torch.randn(16, 16, generator=g),
        "head.weight": torch.randn(2, 16, generator=g),
    }


def dense(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.ones_like(v, dtype=torch.bool) for k, v in weights.items()}


def test_rounds_prune_a_fraction_of_the_remaining_weights_per_layer() -> None:
    weights, masks = network(), dense(network())
    for r in range(1, 6):
        masks = magnitude_prune(network(r), masks, 0.2)  # a new "training" every round
        for name, mask in masks.items():
            expected = weights[name].numel()
            for _ in range(r):
                expected = round(0.8 * expected)
            assert int(mask.sum()) == expected, (name, r)
    assert sparsity(masks) == pytest.approx(1 - 0.8**5, abs=0.01)


def test_pruned_weights_stay_pruned_and_survivors_are_the_largest() -> None:
    trained = network(1)
    masks = magnitude_prune(trained, dense(trained), 0.5)
    bigger = {k: v * 100 * ~masks[k] for k, v in trained.items()}  # pruned ones grow large
    again = magnitude_prune(bigger, masks, 0.5)
    for name, mask in again.items():
        assert not (mask & ~masks[name]).any()
    for name, mask in masks.items():
        magnitude = trained[name].abs()
        assert magnitude[mask].min() >= magnitude[~mask].max()


def test_global_scope_ranks_across_layers() -> None:
    weights = {"a": torch.full((10,), 0.1), "b": torch.full((10,), 1.0)}
    masks = magnitude_prune(weights, dense(weights), 0.5, scope="global")
    assert int(masks["a"].sum()) == 0 and int(masks["b"].sum()) == 10


@pytest.mark.parametrize("condition", CONDITIONS)
def test_conditions(condition: str) -> None:
    initial, trained = network(0), network(1)
    ticket = magnitude_prune(trained, dense(trained), 0.6)
    g = torch.Generator().manual_seed(0)
    masks, weights = condition_weights(initial, ticket, condition, g)
    for name in initial:
        assert torch.all(weights[name][~masks[name]] == 0), name
    assert sparsity(masks) == pytest.approx(sparsity(ticket), abs=0.01)
    same_masks = all(torch.equal(masks[k], ticket[k]) for k in ticket)
    if condition == "ticket":
        assert same_masks
        for name in initial:
            assert torch.equal(weights[name][masks[name]], initial[name][masks[name]])
    elif condition == "permuted_init":
        assert same_masks
        for name in initial:  # survivors hold the layer's own initial values, shuffled
            values = set(initial[name].flatten().tolist())
            assert set(weights[name][masks[name]].tolist()) <= values
            assert not torch.equal(weights[name][masks[name]], initial[name][masks[name]])
    elif condition == "permuted_mask":
        assert not same_masks
        for name in initial:  # the layer keeps its count; positions and values are shuffled
            assert int(masks[name].sum()) == int(ticket[name].sum())
    else:
        assert not same_masks
        for name in initial:  # every layer at the same density; fresh default init bounds
            density = 1.0 - sparsity(ticket)
            assert int(masks[name].sum()) == round(density * masks[name].numel())
            bound = 1.0 / initial[name].shape[1] ** 0.5
            assert weights[name].abs().max() <= bound


def test_conditions_are_reproducible_from_the_generator() -> None:
    initial, ticket = network(0), magnitude_prune(network(1), dense(network(1)), 0.5)
    first = condition_weights(initial, ticket, "permuted_mask", torch.Generator().manual_seed(3))
    second = condition_weights(initial, ticket, "permuted_mask", torch.Generator().manual_seed(3))
    for a, b in zip(first, second, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="Unknown condition 'lucky'; allowed: "):
        condition_weights(initial, ticket, "lucky", torch.Generator())


def test_rescaling_keeps_each_layers_dense_second_moment() -> None:
    initial, ticket = network(0), magnitude_prune(network(1), dense(network(1)), 0.8)
    _, weights = condition_weights(initial, ticket, "ticket", torch.Generator(), rescale=True)
    for name in initial:
        assert weights[name].pow(2).mean() == pytest.approx(initial[name].pow(2).mean().item())
        assert torch.all(weights[name][~ticket[name]] == 0)
    layer = rescale_to_dense_variance(torch.zeros(3), torch.ones(3), torch.zeros(3).bool())
    assert torch.equal(layer, torch.zeros(3))  # nothing survives: nothing to scale


def test_input_connections_and_bad_fractions() -> None:
    mask = torch.tensor([[True, False, True], [False, False, True]])
    assert input_connections(mask).tolist() == [1, 0, 2]
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="fraction must lie in"):
            magnitude_prune(network(), dense(network()), fraction)
    with pytest.raises(ValueError, match="Unknown scope 'row'"):
        magnitude_prune(network(), dense(network()), 0.2, scope="row")
