import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchrl_sparse.sparse import drop_and_grow, keep_top, random_mask


@given(
    copies=st.integers(1, 3),
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_keep_top_and_random_exact_counts(copies, rows, cols, fraction, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    shape = torch.Size([copies, rows, cols])
    k = round(fraction * rows * cols)
    scores = torch.randn(shape, generator=generator)
    for mask in (keep_top(scores, k, copies), random_mask(shape, k, copies, generator)):
        assert mask.dtype == torch.bool and mask.shape == shape
        assert mask.reshape(copies, -1).sum(1).tolist() == [k] * copies
    kept = keep_top(scores, k, copies).reshape(copies, -1)
    flat = scores.reshape(copies, -1)
    for c in range(copies):
        if 0 < k < rows * cols:
            assert flat[c][kept[c]].min() >= flat[c][~kept[c]].max()


@given(
    numel=st.integers(4, 64),
    density=st.floats(0.1, 0.9),
    drop_fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_drop_and_grow_keeps_count_and_grows_only_new(numel, density, drop_fraction, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    active = max(1, round(density * numel))
    mask = random_mask(torch.Size([2, numel]), active, 2, generator)
    magnitude = torch.rand(2, numel, generator=generator) * mask
    grow_scores = torch.rand(2, numel, generator=generator)
    drop = round(drop_fraction * active)
    new = drop_and_grow(mask, magnitude, grow_scores, drop, copies=2)
    assert new.sum(1).tolist() == mask.sum(1).tolist()
    dropped = mask & ~new
    grown = new & ~mask
    expected = min(drop, active, numel - active)
    assert dropped.sum(1).tolist() == [expected, expected]
    assert grown.sum(1).tolist() == [expected, expected]
    for c in range(2):
        if expected and (mask[c] & new[c]).any():
            # The dropped weights are the smallest active magnitudes.
            assert magnitude[c][dropped[c]].max() <= magnitude[c][mask[c] & new[c]].min()
