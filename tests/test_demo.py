"""The README's demo trains for real and leaves TensorBoard events and a figure behind."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from torchrl_sparse import demo


def test_demo_writes_events_and_figure(tmp_path: Path) -> None:
    figure = demo.main(["--frames", "3000", "--logdir", str(tmp_path), "--sparsity", "0.8"])
    assert figure.exists() and figure.stat().st_size > 10_000
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"charts/episode_return", "losses/total", "sparsity/total"} <= set(tags)
    sparsity = events.Scalars("sparsity/total")
    assert [s.step for s in sparsity] == [1000, 2000, 3000]
    assert sparsity[-1].value > 0.0
