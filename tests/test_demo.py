"""The README's demo trains for real and leaves TensorBoard events and a figure behind."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from torchrl_sparse import demo


def test_demo_writes_events_and_figure(tmp_path: Path, capsys) -> None:
    figure = demo.main(["--frames", "3000", "--logdir", str(tmp_path), "--sparsity", "0.8"])
    assert figure == tmp_path / "run0" / "summary.png"
    assert figure.exists() and figure.stat().st_size > 10_000
    assert f"Run folder: {tmp_path / 'run0'}" in capsys.readouterr().out
    events = EventAccumulator(str(figure.parent))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"charts/episode_return", "losses/total", "sparsity/total"} <= set(tags)
    sparsity = events.Scalars("sparsity/total")
    assert [s.step for s in sparsity] == [1000, 2000, 3000]
    assert sparsity[-1].value > 0.0


def test_each_run_gets_its_own_folder(tmp_path: Path) -> None:
    """A second run neither mixes its events into the first's nor overwrites its figure."""
    first = demo.main(["--frames", "1000", "--logdir", str(tmp_path)])
    first_bytes = {p: p.read_bytes() for p in first.parent.iterdir()}
    second = demo.main(["--frames", "2000", "--logdir", str(tmp_path)])
    assert (first.parent.name, second.parent.name) == ("run0", "run1")
    assert {p: p.read_bytes() for p in first.parent.iterdir()} == first_bytes
    for run, frames in ((first.parent, [1000]), (second.parent, [1000, 2000])):
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        events = EventAccumulator(str(run))
        events.Reload()
        assert [s.step for s in events.Scalars("sparsity/total")] == frames
