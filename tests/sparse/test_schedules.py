import pytest

from torchrl_sparse.sparse import GMP, ConstantSchedule, CubicSchedule, Sparsifier, num_active

from .conftest import make_cnn_mlp


def test_cubic_matches_zhu_gupta() -> None:
    schedule = CubicSchedule(start=0.05, end=0.8, update_every=500).resolve(total_steps=400_000)
    assert (schedule.start, schedule.end) == (20_000, 320_000)
    for step in (0, 20_000, 100_000, 250_000, 320_000, 400_000):
        progress = min(max((step - 20_000) / 300_000, 0.0), 1.0)
        assert schedule.fraction(step) == pytest.approx(1 - (1 - progress) ** 3)


def test_cubic_update_steps_reach_the_end() -> None:
    schedule = CubicSchedule(start=100, end=1050, update_every=100).resolve(total_steps=2000)
    updates = [t for t in range(1, 2001) if schedule.is_update_step(t - 1, t)]
    assert updates[0] == 100 and updates[-1] == 1100
    assert schedule.fraction(updates[-1]) == 1.0
    assert all(u % 100 == 0 for u in updates)


def test_update_detected_across_large_increments() -> None:
    schedule = ConstantSchedule(update_every=2000).resolve(None)
    assert schedule.is_update_step(1500, 3500)
    assert not schedule.is_update_step(2000, 3999)


def test_constant_schedule_stops_at_end() -> None:
    schedule = ConstantSchedule(update_every=250, end=0.75).resolve(total_steps=1000)
    updates = [t for t in range(1, 1001) if schedule.is_update_step(t - 1, t)]
    assert updates == [250, 500, 750]


@pytest.mark.parametrize(
    ("schedule", "total", "message"),
    [
        (CubicSchedule(start=0.5, end=0.2), 100, "before it starts"),
        (CubicSchedule(start=0, end=2000), 1000, "after training ends"),
        (CubicSchedule(start=0.1, end=0.8), None, "pass total_steps"),
        (CubicSchedule(start=0.1, end=1.5), 100, r"lie in \[0, 1\]"),
        (CubicSchedule(start=-5, end=10), 100, ">= 0"),
        (ConstantSchedule(update_every=10, start=100), 100, "before total_steps"),
    ],
)
def test_bad_windows(schedule, total, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schedule.resolve(total)


@pytest.mark.parametrize("every", [0, -1, 2.5])
def test_bad_update_every(every) -> None:
    with pytest.raises(ValueError, match="update_every must be a positive int"):
        ConstantSchedule(update_every=every)


@pytest.mark.parametrize(
    ("end", "update_every", "total", "last"),
    [
        (950, 100, 980, 980),  # the boundary after the end (1000) lies past training
        (1.0, 300, 1000, 1000),  # the end is the last step and off the grid
        (950, 100, 2000, 1000),  # training goes on: the boundary after the end
    ],
)
def test_final_update_never_falls_past_training(end, update_every, total, last) -> None:
    schedule = CubicSchedule(start=0, end=end, update_every=update_every).resolve(total)
    updates = [t for t in range(1, total + 1) if schedule.is_update_step(t - 1, t)]
    assert updates[-1] == schedule.last_update == last
    assert schedule.fraction(updates[-1]) == 1.0


@pytest.mark.parametrize("increment", [1, 100, 150, 333])
def test_gmp_reaches_its_final_sparsity_by_the_last_step(increment: int) -> None:
    model = make_cnn_mlp()
    schedule = CubicSchedule(start=0, end=1.0, update_every=300)
    sparsifier = Sparsifier(model, {"*": 0.95}, method=GMP(schedule), total_steps=1000)
    while sparsifier.step_count < 1000:  # frames per batch: the last batch may overshoot
        sparsifier.step(increment)
    for mask in sparsifier.masks:
        assert int(mask.sum()) == num_active(0.05, mask.numel())
