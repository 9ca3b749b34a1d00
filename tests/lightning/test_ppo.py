"""Multi-task PPO through the real CLI: recipes, a tiny fit, resume, interruption, guards."""

import contextlib
import io
import re
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tensordict import TensorDict

from torchrl_sparse.lightning import FrameCheckpoint, MultiTaskPPO
from torchrl_sparse.lightning.cli import main, run
from torchrl_sparse.lightning.figures import read_scalars

from .conftest import REPO, run_cli, write_recipe

RECIPES = sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes").rglob("*.yaml"))
# The DQN grid repeats 34 conditions per game (tests/lightning/test_dqn_recipes.py loads every
# file): one game per suite goes through the CLI here.
DQN_SAMPLE = (
    "recipes/dqn/minatar/breakout/",
    "recipes/dqn/atari/pong/dense",
    "recipes/dqn/atari/pong/gmp_0.99_nobias",
)
CONDITIONS = [
    r
    for r in RECIPES
    if "/_" not in r
    and not r.startswith("recipes/_")
    and (not r.startswith("recipes/dqn/") or r.startswith(DQN_SAMPLE))
]


def test_recipe_tree_covers_the_papers() -> None:
    minigrid = [r for r in CONDITIONS if r.startswith("recipes/minigrid/")]
    assert len(minigrid) == 3 * 3 * 11
    for suite in ("mt3", "mt5", "mt7"):
        for arch in ("mtppo", "moe", "moore"):
            for condition in ("dense", "gmp", "set", "redo", "reset", "weight_decay", "layer_norm",
                              "gmp_weight_decay", "gmp_pcgrad", "gmp_0.8", "gmp_0.99"):  # fmt: skip
                assert f"recipes/minigrid/{suite}/{arch}/{condition}.yaml" in minigrid


@pytest.mark.parametrize("recipe", CONDITIONS)
def test_every_recipe_parses(recipe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", recipe, "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: torchrl_sparse.lightning." in output.getvalue()


@pytest.mark.parametrize(
    ("overrides", "seed"),
    [
        ([], 0),
        (["--model.init_args.seed", "3"], 3),
        (["--model.seed=4"], 4),
        # A later config sets the seed again (to the recipe's 0), as LightningCLI applies it.
        (["--model.seed", "5", "--config", "recipes/quickstart.yaml"], 0),
        (["--model.seed", "5", "-c", "recipes/quickstart.yaml"], 0),
    ],
)
def test_run_directory_follows_the_seed(
    overrides: list[str], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One seed: the model's names the run directory and seeds everything else."""
    monkeypatch.chdir(REPO)
    cli = run(["--config", "recipes/quickstart.yaml", *overrides], run=False)
    assert cli.model.hparams.seed == seed
    assert cli.config["seed_everything"] == seed
    assert torch.initial_seed() == seed
    logger = cli.trainer.logger
    assert (logger.name, logger.version) == ("quickstart", f"seed{seed}")
    assert Path(logger.log_dir) == Path("runs/quickstart") / f"seed{seed}"


def test_malformed_seed_gets_the_cli_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "recipes/quickstart.yaml", "--model.init_args.seed", "abc"])
    assert exit_info.value.code != 0
    assert "seed" in errors.getvalue() and "abc" in errors.getvalue()


def test_tiny_fit_logs_against_frames(tiny_ppo, tmp_path: Path) -> None:
    result = run_cli("fit", "--config", str(tiny_ppo()), cwd=tmp_path, console_script=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log_dir = tmp_path / "runs" / "tiny" / "seed0"
    scalars = read_scalars(log_dir)
    assert [step for step, _ in scalars["sparsity/total"]] == [300, 600, 900, 1200]
    assert scalars["sparsity/total"][-1][1] == pytest.approx(0.95, abs=1e-3)
    for tag in ("losses/loss_objective", "losses/loss_critic", "charts/sps",
                "charts/eval/normalized_return_mean", "charts/eval/normalized_return/LavaGapS7",
                "plasticity/actor/dormant_ratio", "plasticity/critic/srank"):  # fmt: skip
        assert tag in scalars, sorted(scalars)
    assert [step for step, _ in scalars["charts/eval/normalized_return_mean"]] == [600, 1200]
    assert (log_dir / "summary.png").stat().st_size > 10_000
    assert (log_dir / "checkpoints" / "last.ckpt").exists()
    assert "Summary figure:" in result.stdout
    # Running the same recipe again without --ckpt_path would overwrite the run: refused.
    earlier = {p: p.read_bytes() for p in log_dir.rglob("*") if p.is_file()}
    again = run_cli("fit", "--config", str(tiny_ppo(total_steps_per_task=200)), cwd=tmp_path)
    assert again.returncode != 0
    assert "holds the checkpoint of an earlier run" in again.stderr
    assert "--ckpt_path last" in again.stderr
    assert {p: p.read_bytes() for p in log_dir.rglob("*") if p.is_file()} == earlier


def _final_state(checkpoint: Path) -> dict:
    state = torch.load(checkpoint, weights_only=False)
    sparsity = next(v for k, v in state["callbacks"].items() if "SparsityCallback" in k)
    return {
        "params": state["state_dict"],
        "masks": sparsity["masks"],
        "frames": state["torchrl_sparse"],
    }


def test_sigterm_checkpoint_and_exact_resume(tiny_ppo, tmp_path: Path) -> None:
    reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
    reference_dir.mkdir()
    resumed_dir.mkdir()
    recipe = tiny_ppo(eval_every_steps_per_task=0)
    assert run_cli("fit", "--config", str(recipe), cwd=reference_dir).returncode == 0

    interrupted = write_recipe(
        tmp_path / "interrupted.yaml",
        str(recipe),
        trainer={
            "callbacks": [
                {
                    "class_path": "tests.lightning.signals.SignalAtFrames",
                    "init_args": {"frames": 600, "signum": int(signal.SIGTERM)},
                }
            ]
        },
    )
    killed = run_cli("fit", "--config", str(interrupted), cwd=resumed_dir)
    assert killed.returncode != 0
    checkpoint = resumed_dir / "runs" / "tiny" / "seed0" / "checkpoints" / "last.ckpt"
    assert _final_state(checkpoint)["frames"]["frames"] == 600

    resumed = run_cli("fit", "--config", str(recipe), "--ckpt_path", "last", cwd=resumed_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = _final_state(reference_dir / "runs" / "tiny" / "seed0" / "checkpoints" / "last.ckpt")
    actual = _final_state(checkpoint)
    assert actual["frames"]["frames"] == expected["frames"]["frames"] == 1200
    for name, mask in expected["masks"].items():
        assert torch.equal(actual["masks"][name], mask), name
    for name, value in expected["params"].items():
        assert torch.equal(actual["params"][name], value), name


def test_nan_guard_names_term_and_frame(tiny_ppo, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FloatingPointError, match="loss_entropy is nan at frame 300"):
        main(["fit", "--config", str(tiny_ppo(entropy_coef=float("nan")))])


def test_diverging_parameters_stop_the_run(tiny_ppo, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FloatingPointError, match=r"( is (nan|inf|-inf) at frame|hit non-finite values)"
    ):
        main(["fit", "--config", str(tiny_ppo(lr=1.0e30))])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            ["--model.init_args.suite", "MT4"],
            r"Unknown suite 'MT4'; allowed: \['MT3', 'MT5', 'MT7'\]",
        ),
        (
            ["--model.init_args.total_steps_per_task", "0"],
            "total_steps_per_task must be a positive int, got 0",
        ),
        (
            ["--model.init_args.steps_per_task_per_batch", "500"],
            r"steps_per_task_per_batch=500 \(rounded up to 500, a multiple of envs_per_task=2\) "
            "is larger than total_steps_per_task=400",
        ),
    ],
)
def test_bad_model_config(tiny_ppo, tmp_path: Path, monkeypatch, capsys, override, message) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(tiny_ppo()), *override])
    assert exit_info.value.code == 2
    assert re.search(f"^error: {message}", capsys.readouterr().err, re.MULTILINE)


def test_unknown_architecture_lists_choices(tiny_ppo, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(tiny_ppo()), "--model.init_args.arch", "paco"])
    assert "Expected a typing.Literal['mtppo', 'moe', 'moore']. Got value: paco" in (
        capsys.readouterr().err
    )


def test_sparsity_target_for_missing_network(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(
        tmp_path / "bad.yaml",
        "minigrid/mt3/mtppo/dense.yaml",
        trainer={
            "callbacks": [
                {
                    "class_path": "torchrl_sparse.lightning.SparsityCallback",
                    "init_args": {"groups": {"qvalue_network.*": 0.9}},
                }
            ]
        },
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe)])
    assert exit_info.value.code == 2
    assert "error: Pattern 'qvalue_network.*' matches no prunable layer" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.ckpt"))


def test_ddp_two_ranks_hold_identical_masks_and_parameters(tiny_ppo, tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path / "ddp.yaml",
        str(tiny_ppo(eval_every_steps_per_task=0, total_steps_per_task=400)),
        trainer={
            "strategy": "ddp",
            "devices": 2,
            "accelerator": "cpu",
            "callbacks": [
                {
                    "class_path": "tests.lightning.signals.DumpRankState",
                    "init_args": {"dirpath": str(tmp_path)},
                }
            ],
        },
    )
    result = run_cli("fit", "--config", str(recipe), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert rank0["frames"] == rank1["frames"] == 1200  # 2 ranks x 2 batches of 300 frames
    assert rank0["masks"] and all(
        torch.equal(m, rank1["masks"][k]) for k, m in rank0["masks"].items()
    )
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name


def test_trainer_fit_refuses_to_overwrite_an_earlier_run(tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"an earlier run")
    module = MultiTaskPPO(
        "MT3",
        envs_per_task=1,
        total_steps_per_task=100,
        steps_per_task_per_batch=100,
        eval_every_steps_per_task=0,
    )
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        callbacks=[FrameCheckpoint(tmp_path)],
    )
    with pytest.raises(FileExistsError, match=r"last\.ckpt holds the checkpoint of an earlier run"):
        trainer.fit(module)
    assert (tmp_path / "last.ckpt").read_bytes() == b"an earlier run"


@pytest.mark.parametrize(("per_task", "shares"), [(2_000, 1), (500, 4), (5_000, 1), (1_500, 1)])
def test_critic_batches_are_equal_shares_of_the_whole_batch(per_task: int, shares: int) -> None:
    module = MultiTaskPPO("MT3", critic_batch_per_task=per_task)
    data = TensorDict({"index": torch.arange(module.frames_per_batch)}, [module.frames_per_batch])
    batches = module._critic_batches(data)
    assert len(batches) == shares
    assert {len(b) for b in batches} == {6_000 // shares}
    assert sorted(torch.cat([b["index"] for b in batches]).tolist()) == list(range(6_000))


@pytest.mark.parametrize(
    ("suite", "frames_per_batch", "total_frames", "eval_every_frames"),
    [
        ("MT3", 6_000, 1_200_000, 30_000),
        ("MT5", 10_000, 2_000_000, 50_000),
        ("MT7", 14_000, 2_800_000, 70_000),
    ],
)
def test_papers_units_are_steps_of_every_task(
    suite: str, frames_per_batch: int, total_frames: int, eval_every_frames: int
) -> None:
    """The papers' 2,000-step updates and 400k-step runs count steps of every task."""
    module = MultiTaskPPO(suite)
    assert module.frames_per_batch == frames_per_batch
    assert module.total_frames == total_frames
    assert module.eval_every_frames == eval_every_frames
    assert len(module.train_dataloader()) == 200


def test_steps_per_batch_round_up_to_whole_environment_steps() -> None:
    module = MultiTaskPPO("MT3", envs_per_task=8, steps_per_task_per_batch=1_001)
    assert module.frames_per_batch == 1_008 * 3


class _CountSteps(pl.Callback):
    """Counts the actor's and the critic's optimizer steps."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.steps = [0, 0]
        for index, optimizer in enumerate(trainer.optimizers):
            optimizer.register_step_post_hook(
                lambda *_, index=index: self.steps.__setitem__(index, self.steps[index] + 1)
            )


@pytest.mark.parametrize(
    ("critic_epochs", "critic_per_task", "critic_steps"), [(1, 100, 1), (2, 50, 4)]
)
def test_update_takes_the_configured_actor_and_critic_steps(
    critic_epochs: int, critic_per_task: int, critic_steps: int
) -> None:
    """MOORE's update: 8 policy epochs of minibatches; the critic one full-batch step."""
    module = MultiTaskPPO(
        "MT3",
        envs_per_task=1,
        total_steps_per_task=100,
        steps_per_task_per_batch=100,
        policy_epochs=3,
        policy_minibatch_per_task=25,
        critic_epochs=critic_epochs,
        critic_batch_per_task=critic_per_task,
        eval_every_steps_per_task=0,
    )
    counter = _CountSteps()
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
        callbacks=[counter],
    )  # fmt: skip
    trainer.fit(module)
    assert module.frames == 300
    assert counter.steps == [3 * 4, critic_steps]
