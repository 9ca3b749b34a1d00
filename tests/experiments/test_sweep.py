"""Sweep specification and run states, from the files a run folder holds (no training)."""

import json
import os
import socket
import time
from pathlib import Path

import pytest

from torchrl_sparse.experiments import SUMMARY_FILE
from torchrl_sparse.experiments.sweep import Sweep, SweepRun, parse_grid, parse_seeds


def test_seeds_ranges_and_lists() -> None:
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("5, 1,2-3") == [5, 1, 2, 3]


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "0-2,2", "1.5"])
def test_bad_seeds_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="seed"):
        parse_seeds(text)


def test_grid_values_are_kept_as_written() -> None:
    assert parse_grid(["--model.init_args.lr=1e-3, 3e-4", "model.init_args.gamma=0.9"]) == {
        "model.init_args.lr": ["1e-3", "3e-4"],
        "model.init_args.gamma": ["0.9"],
    }


@pytest.mark.parametrize(
    "items", [["model.init_args.lr"], ["=1"], ["a=1,"], ["a=1", "a=2"]], ids=str
)
def test_bad_grid_is_refused(items: list[str]) -> None:
    with pytest.raises(ValueError, match="grid"):
        parse_grid(items)


def test_conditions_are_recipe_paths_then_grid_labels(tiny_recipes, tmp_path: Path) -> None:
    tiny_recipes("a", "b")
    sweep = Sweep(
        [str(tmp_path / "recipes" / "*.yaml")],
        seeds=[0, 1],
        grid={"model.init_args.lr": ["1e-3", "3e-4"]},
        out=str(tmp_path / "out"),
    )
    runs = sweep.runs()
    assert [run.name for run in runs] == [
        f"{recipe}@lr={lr}/seed{seed}"
        for recipe in ("a", "b")
        for lr in ("1e-3", "3e-4")
        for seed in (0, 1)
    ]
    command = runs[1].command()
    assert command[command.index("--model.init_args.lr") + 1] == "1e-3"
    assert command[command.index("--model.init_args.seed") + 1] == "1"
    assert command[command.index("--trainer.logger.init_args.name") + 1] == "a@lr=1e-3"
    assert runs[1].run_dir == tmp_path / "out" / "a@lr=1e-3" / "seed1"


def test_options_sharing_a_last_name_are_labelled_in_full(tiny_recipes, tmp_path) -> None:
    (recipe,) = tiny_recipes("a")
    grid = {"x.init_args.sparsity": ["0.9"], "y.init_args.sparsity": ["0.8"]}
    (run,) = Sweep([str(recipe)], seeds=[0], grid=grid).runs()
    assert run.condition == "a@x.init_args.sparsity=0.9@y.init_args.sparsity=0.8"


def test_saved_sweep_loads_back_equal(tiny_recipes, tmp_path: Path) -> None:
    (recipe,) = tiny_recipes("a")
    sweep = Sweep([str(recipe)], seeds=[0, 2], grid={"model.init_args.lr": ["1e-3"]}, out="x")
    sweep.save(tmp_path / "sweep.yaml")
    assert Sweep.load(tmp_path / "sweep.yaml") == sweep


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": []}, "at least one seed"),
        ({"recipes": ["nope/*.yaml"]}, "matches no file"),
        ({"recipes": ["missing.yaml"]}, "No recipe"),
        ({"grid": {"model.init_args.seed": ["1"]}}, "set by the sweep"),
        ({"overrides": {"trainer.logger.init_args.save_dir": "x"}}, "set by the sweep"),
    ],
)
def test_bad_sweeps_are_refused(tiny_recipes, kwargs: dict, message: str) -> None:
    (recipe,) = tiny_recipes("a")
    with pytest.raises(ValueError, match=message):
        Sweep(**{"recipes": [str(recipe)], "seeds": [0], **kwargs})


def test_unknown_keys_in_a_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("recipes: [a.yaml]\nseeds: [0]\njobs: 3\n")
    with pytest.raises(ValueError, match=r"unknown sweep keys \['jobs'\]"):
        Sweep.load(tmp_path / "s.yaml")


def test_two_recipes_cannot_share_a_condition(tmp_path: Path) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "dense.yaml").write_text("{}")
    sweep = Sweep([str(tmp_path / "x/dense.yaml"), str(tmp_path / "y/dense.yaml")], seeds=[0])
    with pytest.raises(ValueError, match="share the run folders"):
        sweep.runs()


@pytest.fixture
def run(tmp_path: Path) -> SweepRun:
    return SweepRun(tmp_path / "r.yaml", "cond", 3, (), tmp_path / "out")


def test_states_follow_the_run_folder(run: SweepRun) -> None:
    assert run.state() == "queued"
    run.prepare_attempt()
    run.hold_lock(os.getpid())
    assert run.state() == "running"
    run.checkpoint.parent.mkdir()
    run.checkpoint.write_bytes(b"ckpt")
    run.record_exit(143, started=0.0)
    assert run.state() == "interrupted"
    assert run.command()[-2:] == ["--ckpt_path", str(run.checkpoint)]
    assert "--ckpt_path" not in run.command(resume=False)
    run.record_exit(1, started=0.0)
    assert run.state() == "failed"
    assert run.last_status()["attempts"] == 2
    (run.run_dir / SUMMARY_FILE).write_text(json.dumps({"schema_version": 1, "finished": False}))
    assert run.state() == "failed"
    (run.run_dir / SUMMARY_FILE).write_text(json.dumps({"schema_version": 1, "finished": True}))
    assert run.state() == "finished"


def test_a_dead_local_lock_is_stale_a_remote_one_is_held(run: SweepRun) -> None:
    run.prepare_attempt()
    run.hold_lock(2**22 + 12345)  # above Linux's default pid_max: no such process
    assert run.state() == "queued"
    node = socket.gethostname() + "-node"
    run.hold_lock(1, host=node)  # refreshed just now by a task on a node
    assert run.state() == "running"
    run.hold_lock(1, host=node, since=time.time() - 3600)  # its node died an hour ago
    assert run.state() == "queued"
    run.hold_lock(0, host="slurm", job_id="42_0", since=0.0)  # submitted, not started yet
    assert run.state() == "running"


def test_a_fresh_start_moves_an_unresumable_attempt_aside(run: SweepRun) -> None:
    run.prepare_attempt()
    (run.run_dir / "events.out.tfevents.1.host").write_bytes(b"old curves")
    run.prepare_attempt()
    assert not any(run.run_dir.iterdir())
    (aside,) = run.run_dir.parent.glob("seed3.attempt-*")
    assert (aside / "events.out.tfevents.1.host").read_bytes() == b"old curves"


def test_fixed_overrides_name_the_condition(tiny_recipes) -> None:
    (recipe,) = tiny_recipes("a")
    sweep = Sweep(
        [str(recipe)],
        seeds=[0],
        grid={"model.init_args.lr": ["3e-4"]},
        overrides={"model.init_args.total_steps_per_task": "1000"},
    )
    (run,) = sweep.runs()
    # A shorter budget is another condition: its runs never pass for the full ones.
    assert run.condition == "a@total_steps_per_task=1000@lr=3e-4"


def test_values_with_a_slash_are_refused(tiny_recipes) -> None:
    (recipe,) = tiny_recipes("a")
    with pytest.raises(ValueError, match="may not hold '/'"):
        Sweep([str(recipe)], seeds=[0], grid={"trainer.default_root_dir": ["a/b"]})


def test_only_one_process_claims_a_run(run: SweepRun) -> None:
    assert run.claim()
    assert not run.claim()  # this process holds it: a second sweep would be refused
    run.release()
    run.hold_lock(2**22 + 12345)  # a stale lock of a process that is gone
    assert run.claim()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("recipes: [a.yaml]\nseeds: [0\n", "cannot read the sweep file"),
        ("- a.yaml\n", "a mapping"),
        ("recipes: [a.yaml]\nseeds: [zero]\n", "seeds must be a list of ints"),
        ("recipes: [1]\nseeds: [0]\n", "recipes must be a list of strs"),
    ],
)
def test_bad_sweep_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        Sweep.load(tmp_path / "s.yaml")
    with pytest.raises(ValueError, match="cannot read the sweep file"):
        Sweep.load(tmp_path / "missing.yaml")


def test_a_torn_status_file_names_itself(run: SweepRun) -> None:
    run.prepare_attempt()
    (run.run_dir / "sweep_status.json").write_text('{"returncode": 1')
    with pytest.raises(ValueError, match=r"sweep_status\.json is not valid JSON"):
        run.state()
