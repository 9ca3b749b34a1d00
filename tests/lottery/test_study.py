"""The IMP study end to end on CartPole with tiny budgets: files, masks, resume, report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from torchrl_sparse.lottery.study import LotteryStudy, run_seed

from ..lightning.conftest import run_cli

TINY = {
    "rounds": 2,
    "rl_frames": 1024,
    "bc_epochs": 1,
    "bc_transitions": 256,
    "eval_episodes": 1,
    "conditions": ("ticket", "permuted_mask", "random_reinit"),
    "hidden_sizes": (16, 16),
    "ppo": {"frames_per_batch": 256, "minibatch_size": 128, "epochs": 1},
}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[LotteryStudy, Path, list[str]]:
    study = LotteryStudy("CartPole-v1", out=str(tmp_path_factory.mktemp("lottery")), **TINY)
    lines: list[str] = []
    directory = run_seed(study, 0, log=lines.append)
    return study, directory, lines


def test_every_training_is_recorded(study_dir) -> None:
    study, directory, lines = study_dir
    assert len(lines) == 2 * (1 + 2 * 3) + 1  # trainings, and the expert dataset line
    for paradigm in ("rl", "bc"):
        assert (directory / paradigm / "round0" / "ticket.json").exists()
        for r in (1, 2):
            for condition in TINY["conditions"]:
                result = json.loads(
                    (directory / paradigm / f"round{r}" / f"{condition}.json").read_text()
                )
                assert result["round"] == r and result["condition"] == condition
                assert result["sparsity"] == pytest.approx(study.sparsity_at(r), abs=0.01)
                assert result["return"] >= 1.0
    assert json.loads((directory / "study.json").read_text())["rounds"] == 2


def test_masks_come_from_the_trained_ticket_and_hold(study_dir) -> None:
    _, directory, _ = study_dir
    for paradigm in ("rl", "bc"):
        trained = torch.load(directory / paradigm / "round0" / "ticket_weights.pt")
        masks = torch.load(directory / paradigm / "round1" / "masks.pt")
        assert set(masks) == {"encoder.0.weight", "encoder.2.weight", "head.weight"}
        for name, mask in masks.items():
            magnitude = trained[name].abs()
            assert magnitude[mask].min() >= magnitude[~mask].max(), name
        ticket = torch.load(directory / paradigm / "round1" / "ticket_weights.pt")
        for name, mask in masks.items():
            assert torch.all(ticket[name][~mask] == 0), name  # held at zero while training
        later = torch.load(directory / paradigm / "round2" / "masks.pt")
        assert all(not (later[k] & ~masks[k]).any() for k in masks)  # pruned stays pruned


def test_rl_and_bc_start_from_the_same_network(study_dir) -> None:
    _, directory, _ = study_dir
    initial = torch.load(directory / "initial.pt")
    for paradigm in ("rl", "bc"):
        rewind = torch.load(directory / paradigm / "rewind.pt")
        for name, value in initial.items():
            assert torch.equal(rewind[name], value), (paradigm, name)


def test_resume_repeats_only_the_missing_training(study_dir) -> None:
    study, directory, _ = study_dir
    missing = directory / "bc" / "round2" / "random_reinit.json"
    before = json.loads(missing.read_text())
    missing.unlink()
    lines: list[str] = []
    run_seed(study, 0, log=lines.append)
    assert len(lines) == 1 and "bc round 2 random_reinit" in lines[0]
    after = json.loads(missing.read_text())
    assert after["return"] == before["return"] and after["sparsity"] == before["sparsity"]


def test_other_settings_are_refused_and_more_rounds_extend(study_dir) -> None:
    study, _, _ = study_dir
    other = LotteryStudy("CartPole-v1", out=study.out, **{**TINY, "prune_fraction": 0.5})
    with pytest.raises(ValueError, match=r"other settings \(prune_fraction: 0.2 -> 0.5\)"):
        run_seed(other, 0)


def test_report_tables_and_figures(study_dir) -> None:
    from torchrl_sparse.lottery.report import write_report

    _, directory, _ = study_dir
    report = write_report(directory.parent)
    for name in ("curves.md", "curves.png", "curves.pdf", "input_masks.md", "input_masks.png",
                 "results.csv", "summary.md"):  # fmt: skip
        assert (report / name).exists(), name
    table = (report / "input_masks.md").read_text()
    assert "pole angle" in table and "| rl | 2 |" in table and "| bc | 1 |" in table
    curves = (report / "curves.md").read_text()
    assert "| 2 | 0.358 |" in curves  # 1 - 0.8^2, rounded per layer (16-wide layers)
    assert "permuted_init" not in curves  # not run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prune-fraction", "1.5"], "prune_fraction must lie in (0, 1), got 1.5."),
        (["--rounds", "0"], "rounds must be >= 1, got 0."),
        (["--rewind-step", "100000"], "rewind_step=100000 is beyond training: a rl training makes"),
        (
            ["--task", "CartPole-v9"],
            "--task 'CartPole-v9' is not a registered gymnasium environment",
        ),
        (["--paradigms", "bc"], "paradigm 'bc' clones the round-0 RL agent: include 'rl' too."),
        (["--conditions", "permuted_mask"], "conditions must include 'ticket'"),
        (["--seeds", "a-b"], "--seeds 'a-b': give '0-2' or '0,3,5'"),
        (["--ppo", "learning_rate=0.1"], "Unknown ppo option(s) ['learning_rate']; allowed: "),
        (["--ppo", "lr=-1e-3"], "lr"),
    ],
)
def test_bad_settings_are_one_line_errors(args: list[str], message: str, tmp_path: Path) -> None:
    command = ["lottery", "--task", "CartPole-v1", "--out", str(tmp_path), *args]
    if "--task" in args[:1]:
        command = ["lottery", "--out", str(tmp_path), *args]
    result = run_cli(*command, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert not any(tmp_path.iterdir())


def test_break_sparsity_handles_negative_returns() -> None:
    from torchrl_sparse.lottery.report import _break_sparsity

    # (round, sparsity, IQM, low, high, seeds): a ticket equal to a negative dense return holds.
    points = [(0, 0.0, -80.0, None, None, 3), (1, 0.2, -80.0, None, None, 3),
              (2, 0.36, -95.0, None, None, 3)]  # fmt: skip
    assert _break_sparsity(points, 0.9) == 0.36
    positive = [(0, 0.0, 500.0, None, None, 3), (1, 0.2, 460.0, None, None, 3)]
    assert _break_sparsity(positive, 0.9) is None


def test_report_refuses_to_pool_seeds_run_with_other_settings(study_dir, tmp_path: Path) -> None:
    import shutil

    from torchrl_sparse.lottery.report import write_report

    _, directory, _ = study_dir
    task_dir = tmp_path / "CartPole-v1"
    shutil.copytree(directory, task_dir / "seed0")
    shutil.copytree(directory, task_dir / "seed1")
    settings = json.loads((task_dir / "seed1" / "study.json").read_text())
    settings["rl_frames"] = 99
    (task_dir / "seed1" / "study.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"other settings \(\['rl_frames'\]\)"):
        write_report(task_dir)


def test_a_minatar_game_runs_with_its_grid_flattened(tmp_path: Path) -> None:
    from torchrl_sparse.lottery.report import write_report

    study = LotteryStudy(
        "MinAtar/Breakout-v1",
        out=str(tmp_path),
        **{**TINY, "rounds": 1, "conditions": ("ticket", "random_reinit")},
    )
    directory = run_seed(study, 0, log=lambda line: None)
    masks = torch.load(directory / "bc" / "round1" / "masks.pt")
    assert masks["encoder.0.weight"].shape == (16, 400)  # 10 x 10 x 4 channels, flattened
    assert json.loads((directory / "rl" / "round1" / "ticket.json").read_text())["return"] >= 0
    report = write_report(directory.parent)
    assert "of 400)" in (report / "input_masks.md").read_text()
