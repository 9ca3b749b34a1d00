import pytest
import torch

from torchrl_sparse.sparse import IterativeMagnitudePruning, Sparsifier, num_active

from .conftest import make_cnn_mlp, train_steps


def build(rewind: str = "original", rewind_step: int = 0, sparsity: float = 0.9, scope="layer"):
    model = make_cnn_mlp()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    method = IterativeMagnitudePruning(0.5, rewind_step=rewind_step, rewind=rewind)
    sparsifier = Sparsifier(model, {"*": sparsity}, method=method, optimizer=optimizer, scope=scope)
    return model, initial, optimizer, sparsifier


def test_rounds_prune_remaining_and_stop_at_target() -> None:
    model, _, optimizer, sparsifier = build(sparsity=0.8)
    expected = [0.5, 0.75, 0.8, 0.8]
    for sparsity in expected:
        train_steps(model, optimizer, sparsifier, 2)
        sparsifier.update_topology()
        for mask in sparsifier.masks:
            assert int(mask.sum()) >= num_active(0.2, mask.numel())
        assert sparsifier.stats()["sparsity/total"] == pytest.approx(sparsity, abs=0.01)
    assert sparsifier.method.rounds == 4


def test_ticket_rewinds_survivors_to_initialisation() -> None:
    model, initial, optimizer, sparsifier = build()
    train_steps(model, optimizer, sparsifier, 3)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    sparsifier.update_topology()
    state = model.state_dict()
    for target, mask in zip(sparsifier.targets, sparsifier.masks, strict=True):
        name = target.name
        assert torch.equal(state[name][mask], initial[name][mask])
        assert torch.all(state[name][~mask] == 0)
        # Survivors are the largest trained magnitudes.
        assert trained[name].abs()[mask].min() >= trained[name].abs()[~mask].max()
    assert torch.equal(state["5.bias"], initial["5.bias"])
    assert not optimizer.state  # a new round trains from scratch


def test_late_rewinding() -> None:
    model, _, optimizer, sparsifier = build(rewind_step=2)
    train_steps(model, optimizer, sparsifier, 2)
    at_step_2 = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model, optimizer, sparsifier, 3)
    sparsifier.update_topology()
    mask = sparsifier.masks[0]
    assert torch.equal(model.state_dict()["0.weight"][mask], at_step_2["0.weight"][mask])


def test_permuted_baseline_keeps_layer_values() -> None:
    model, initial, optimizer, sparsifier = build("permuted")
    train_steps(model, optimizer, sparsifier, 2)
    sparsifier.update_topology()
    weight = model.state_dict()["5.weight"]
    mask = sparsifier.masks[2]
    assert not torch.equal(weight[mask], initial["5.weight"][mask])
    # Survivors hold values drawn from the layer's own initial values.
    initial_values = set(initial["5.weight"].flatten().tolist())
    assert set(weight[mask].tolist()) <= initial_values


@pytest.mark.parametrize("rewind", ["reinit", "random_mask"])
def test_reinit_baselines(rewind: str) -> None:
    model, initial, optimizer, sparsifier = build(rewind)
    train_steps(model, optimizer, sparsifier, 2)
    magnitude_mask = None
    if rewind == "random_mask":
        reference = build("original")
        train_steps(reference[0], reference[2], reference[3], 2)
        reference[3].update_topology()
        magnitude_mask = reference[3].masks[2]
    sparsifier.update_topology()
    weight = model.state_dict()["5.weight"]
    mask = sparsifier.masks[2]
    bound = 1 / (200**0.5)
    assert weight[mask].abs().max() <= bound
    assert not torch.equal(weight[mask], initial["5.weight"][mask])
    assert int(mask.sum()) == num_active(0.5, mask.numel())
    if magnitude_mask is not None:
        assert not torch.equal(mask, magnitude_mask)


def test_global_scope_round() -> None:
    model, _, optimizer, sparsifier = build(scope="global")
    train_steps(model, optimizer, sparsifier, 2)
    sparsifier.update_topology()
    kept = sum(int(m.sum()) for m in sparsifier.masks)
    total = sum(m.numel() for m in sparsifier.masks)
    assert kept == round(0.5 * total)


def test_round_steps_and_checkpoint() -> None:
    model = make_cnn_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    method = IterativeMagnitudePruning(0.5, round_steps=4)
    sparsifier = Sparsifier(model, {"*": 0.9}, method=method, optimizer=optimizer)
    train_steps(model, optimizer, sparsifier, 8)
    assert method.rounds == 2
    state = sparsifier.state_dict()
    assert state["method"]["rounds"] == 2 and "0.weight" in state["method"]["snapshot"]
