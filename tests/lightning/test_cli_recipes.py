"""Recipes a researcher can tweak: callbacks merged by class, set from the command line; --smoke."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from torchrl_sparse.lightning import (
    FrameCheckpoint,
    PlasticityMonitorCallback,
    SparsityCallback,
)
from torchrl_sparse.lightning.cli import expand_command_line, load_recipe, run
from torchrl_sparse.lightning.figures import read_scalars

from .conftest import REPO, write_recipe

GMP = "minigrid/mt3/moore/gmp.yaml"
SPARSITY = "torchrl_sparse.lightning.SparsityCallback"


def sparsity_callbacks(cli) -> list[SparsityCallback]:
    return [c for c in cli.trainer.callbacks if isinstance(c, SparsityCallback)]


def targets(callback: SparsityCallback) -> dict[str, float]:
    return {g.include_patterns[0]: g.sparsity for g in callback.groups}


def test_an_extending_recipe_overrides_the_callback_of_its_base(tmp_path: Path) -> None:
    derived = write_recipe(
        tmp_path / "gmp_0.9.yaml",
        GMP,
        trainer={
            "callbacks": [
                {
                    "class_path": SPARSITY,
                    "init_args": {"groups": {"actor_network.*": 0.9, "critic_network.*": 0.9}},
                },
                {"class_path": "torchrl_sparse.lightning.FrameCheckpoint", "init_args": {}},
            ]
        },
    )
    recipe = load_recipe(derived)
    callbacks = recipe["trainer"]["callbacks"]
    base = load_recipe(REPO / "recipes" / GMP)["trainer"]["callbacks"]
    assert [c["class_path"] for c in callbacks] == [c["class_path"] for c in base]
    (sparsity,) = [c for c in callbacks if c["class_path"] == SPARSITY]
    (base_sparsity,) = [c for c in base if c["class_path"] == SPARSITY]
    # Only the groups changed: method, distribution and exclusions are the base's.
    assert sparsity["init_args"] == {
        **base_sparsity["init_args"],
        "groups": {"actor_network.*": 0.9, "critic_network.*": 0.9},
    }
    (callback,) = sparsity_callbacks(run(["--config", str(derived)], run=False))
    assert targets(callback) == {"actor_network.*": 0.9, "critic_network.*": 0.9}
    assert type(callback.distribution).__name__ == "ERK"
    assert type(callback.method).__name__ == "GMP"


def test_extending_replaces_lists_and_classes(tmp_path: Path) -> None:
    derived = write_recipe(
        tmp_path / "set.yaml",
        GMP,
        trainer={
            "callbacks": [
                {
                    "class_path": "torchrl_sparse.lightning.PlasticityMonitorCallback",
                    "init_args": {"metrics": ["srank"]},
                },
                {
                    "class_path": SPARSITY,
                    "init_args": {
                        "method": {
                            "class_path": "torchrl_sparse.sparse.SET",
                            "init_args": {"zeta": 0.2},
                        }
                    },
                },
            ]
        },
    )
    callbacks = {c["class_path"]: c for c in load_recipe(derived)["trainer"]["callbacks"]}
    monitor = callbacks["torchrl_sparse.lightning.PlasticityMonitorCallback"]["init_args"]
    assert monitor["metrics"] == ["srank"]  # a list is replaced, not appended to
    assert callbacks[SPARSITY]["init_args"]["method"] == {
        "class_path": "torchrl_sparse.sparse.SET",
        "init_args": {"zeta": 0.2},  # another class: none of GMP's arguments
    }


def test_the_command_line_sets_any_callbacks_arguments() -> None:
    cli = run(
        [
            "--config", str(REPO / "recipes" / GMP),
            # The first callback: LightningCLI alone reaches only the last one.
            "--trainer.callbacks.FrameCheckpoint.every_n_frames", "1234",
            "--trainer.callbacks.SparsityCallback.groups", "{actor_network.*: 0.9}",
            "--trainer.callbacks.SparsityCallback.init_args.method.schedule.update_every=1000",
            "--trainer.callbacks.PlasticityMonitorCallback.metrics", "[srank]",
        ],
        run=False,
    )  # fmt: skip
    callbacks = {type(c): c for c in cli.trainer.callbacks}
    assert callbacks[FrameCheckpoint].every_n_frames == 1234
    assert callbacks[PlasticityMonitorCallback].metrics == ["srank"]
    (sparsity,) = sparsity_callbacks(cli)
    assert targets(sparsity) == {"actor_network.*": 0.9}  # the value replaces the groups
    assert sparsity.method.schedule.update_every == 1000
    assert sparsity.method.schedule.start == 0.05  # the recipe's


def test_the_command_line_sets_one_group_of_a_glob_with_dots() -> None:
    cli = run(
        [
            "--config", str(REPO / "recipes" / GMP),
            "--trainer.callbacks.SparsityCallback.groups.critic_network.*", "0.5",
        ],
        run=False,
    )  # fmt: skip
    (sparsity,) = sparsity_callbacks(cli)
    assert targets(sparsity) == {"actor_network.*": 0.95, "critic_network.*": 0.5}


def test_a_second_config_overrides_callbacks_and_options_in_order(tmp_path: Path) -> None:
    tweaks = tmp_path / "tweaks.yaml"
    tweaks.write_text(
        yaml.safe_dump(
            {
                "model": {"init_args": {"lr": 0.01}},
                "trainer": {
                    "callbacks": [{"class_path": SPARSITY, "init_args": {"seed": 7}}],
                },
            }
        )
    )
    cli = run(
        ["--config", str(REPO / "recipes" / GMP), "--model.init_args.lr", "0.5",
         "--model.init_args.gamma", "0.5", "--config", str(tweaks)],
        run=False,
    )  # fmt: skip
    (sparsity,) = sparsity_callbacks(cli)
    assert (sparsity.seed, targets(sparsity)["actor_network.*"]) == (7, 0.95)
    assert (cli.model.hparams.lr, cli.model.hparams.gamma) == (0.01, 0.5)


def test_options_after_smoke_override_it() -> None:
    cli = run(
        ["--config", str(REPO / "recipes" / GMP), "--smoke",
         "--model.init_args.total_steps_per_task", "2000"],
        run=False,
    )  # fmt: skip
    assert cli.model.total_frames == 6_000
    assert cli.model.hparams.steps_per_task_per_batch == 250


def test_several_callbacks_of_a_class_are_addressed_by_index(tmp_path: Path) -> None:
    def sparsity(groups: dict[str, float]) -> dict:
        return {"class_path": SPARSITY, "init_args": {"groups": groups}}

    two = write_recipe(
        tmp_path / "two.yaml",
        "minigrid/mt3/mtppo/dense.yaml",
        trainer={
            "callbacks": [sparsity({"actor_network.*": 0.9}), sparsity({"critic_network.*": 0.5})]
        },
    )
    # An extending file's first callback of a class merges into the base's first.
    derived = write_recipe(
        tmp_path / "derived.yaml",
        str(two),
        trainer={"callbacks": [sparsity({"actor_network.*": 0.8})]},
    )
    cli = run(
        ["--config", str(derived), "--trainer.callbacks.SparsityCallback.1.groups",
         "{critic_network.*: 0.7}"],
        run=False,
    )  # fmt: skip
    assert [targets(c) for c in sparsity_callbacks(cli)] == [
        {"actor_network.*": 0.8},
        {"critic_network.*": 0.7},
    ]


def test_every_recipe_has_at_most_one_callback_of_a_class() -> None:
    """What the recipes hold today: derived ones merge into it (see the test above otherwise)."""
    for path in (REPO / "recipes").rglob("*.yaml"):
        names = [c["class_path"] for c in load_recipe(path).get("trainer", {}).get("callbacks", [])]
        assert len(names) == len(set(names)), path


# ------------------------------------------------------------------------------------ smoke
@pytest.mark.parametrize("smoke", [[], ["--smoke"]])
def test_an_expanded_command_line_expands_to_itself(tmp_path: Path, smoke: list[str]) -> None:
    """Lightning's DDP launcher reruns the rewritten command line on the other ranks."""
    argv = ["--config", str(REPO / "recipes" / GMP), *smoke,
            "--trainer.callbacks.FrameCheckpoint.every_n_frames", "7"]  # fmt: skip
    once = run(argv, run=False)
    twice = run(expand_command_line(argv, tmp_path), run=False)
    for cli in (once, twice):
        assert cli.trainer.logger.name == "smoke/" * bool(smoke) + "minigrid/mt3/moore/gmp"
        (checkpoint,) = [c for c in cli.trainer.callbacks if isinstance(c, FrameCheckpoint)]
        assert checkpoint.every_n_frames == 7
    configs = [cli.config.as_dict() for cli in (once, twice)]
    for config in configs:
        del config["config"]  # the expanded files
    assert configs[0] == configs[1]


def test_smoke_keeps_the_recipe_and_shrinks_its_length_and_periods() -> None:
    cli = run(["--config", str(REPO / "recipes" / GMP), "--smoke"], run=False)
    assert cli.model.total_frames == 3_000  # 1,000 steps of the 3 tasks
    assert cli.model.hparams.arch == "moore"
    callbacks = {type(c): c for c in cli.trainer.callbacks}
    assert callbacks[FrameCheckpoint].every_n_frames == 1
    assert callbacks[PlasticityMonitorCallback].every_n_frames == 1
    assert callbacks[PlasticityMonitorCallback].batch_size == 256
    (sparsity,) = sparsity_callbacks(cli)
    assert sparsity.method.schedule.update_every == 1
    assert targets(sparsity) == {"actor_network.*": 0.95, "critic_network.*": 0.95}
    logger = cli.trainer.logger
    assert (logger.name, logger.version) == ("smoke/minigrid/mt3/moore/gmp", "seed0")


def smoke_run(recipe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    monkeypatch.chdir(tmp_path)
    cli = run(["fit", "--config", str(REPO / "recipes" / recipe), "--smoke"])
    log_dir = tmp_path / "runs" / "smoke" / Path(recipe).with_suffix("") / "seed0"
    assert Path(cli.trainer.logger.log_dir).resolve() == log_dir
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["smoke"]  # the real run's apart
    steps = {tag: [s for s, _ in values] for tag, values in read_scalars(log_dir).items()}
    summary = json.loads((log_dir / "summary.json").read_text())
    assert summary["finished"]
    assert (log_dir / "checkpoints" / "last.ckpt").is_file()
    assert (log_dir / "summary.png").is_file()
    return cli, steps, summary


def test_smoke_fit_of_a_ppo_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli, steps, summary = smoke_run("minigrid/mt3/mtppo/gmp.yaml", tmp_path, monkeypatch)
    batches = [768, 1_536, 2_304, 3_072]  # 256 steps of the 3 tasks
    assert summary["frames"] == 3_072
    assert summary["sparsity"] == pytest.approx(0.95, abs=1e-3)
    for tag in ("sparsity/total", "plasticity/actor/dormant_ratio", "plasticity/critic/srank",
                "losses/loss_objective"):  # fmt: skip
        assert steps[tag] == batches, tag
    assert steps["charts/eval/normalized_return_mean"] == [1_536, 3_072]
    config = yaml.safe_load((Path(cli.trainer.logger.log_dir) / "config.yaml").read_text())
    assert config["model"]["init_args"]["total_steps_per_task"] == 1_000


def test_smoke_fit_of_a_sac_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, steps, summary = smoke_run("metaworld/cpu/reach_window_close.yaml", tmp_path, monkeypatch)
    assert summary["frames"] == 1_000
    assert steps["plasticity/actor/srank"] == [200, 400, 600, 800, 1_000]
    assert steps["losses/loss_qvalue"] == [400, 600, 800, 1_000]  # after 400 frames of warm-up
    assert steps["charts/eval/success_mean"] == [1_000]
