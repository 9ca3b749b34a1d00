"""A small sparse-training demo: PPO on CartPole with a 90%-sparse GMP actor.

The whole TorchRL pipeline is the usual one (collector, GAE, ``ClipPPOLoss``, Adam); the
sparsity is the three lines marked ``# sparse``. Every run gets its own folder under
``--logdir`` (``runs/demo/run0``, ``runs/demo/run1``, ...): TensorBoard logs (``charts/``,
``losses/``, ``sparsity/`` against environment frames) and a summary figure, whose paths are
printed at the end.

Run: ``python -m torchrl_sparse.demo --frames 20000``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tensordict.nn import TensorDictModule
from torch.utils.tensorboard import SummaryWriter
from torchrl.collectors import Collector
from torchrl.envs import GymEnv, RewardSum, StepCounter, TransformedEnv
from torchrl.modules import MLP, ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from torchrl_sparse.sparse import GMP, CubicSchedule, Sparsifier


def main(argv: list[str] | None = None) -> Path:
    """Train the demo in a new run folder under ``--logdir`` (see :func:`new_run_dir`).

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The path of the run's summary figure, ``<logdir>/run<N>/summary.png``.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument(
        "--logdir", type=Path, default=Path("runs/demo"), help="parent of the run folders"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    frames_per_batch = 1000

    env = TransformedEnv(GymEnv("CartPole-v1"), StepCounter())
    env.append_transform(RewardSum())
    env.set_seed(args.seed)
    actor = ProbabilisticActor(
        TensorDictModule(MLP(in_features=4, out_features=2, num_cells=[64, 64]),
                         ["observation"], ["logits"]),
        in_keys=["logits"], spec=env.action_spec, return_log_prob=True,
        distribution_class=torch.distributions.OneHotCategorical,
    )  # fmt: skip
    critic = ValueOperator(MLP(in_features=4, out_features=1, num_cells=[64, 64]), ["observation"])
    loss = ClipPPOLoss(actor, critic, entropy_coeff=0.01)
    advantage = GAE(gamma=0.99, lmbda=0.95, value_network=critic)
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
    updates = args.frames // frames_per_batch * 4
    sparsifier = Sparsifier(  # sparse
        loss, {"actor_network.*": args.sparsity}, method=GMP(CubicSchedule(0.1, 0.7, 8)),
        total_steps=updates, optimizer=optimizer,
    )  # fmt: skip

    collector = Collector(
        env, actor, frames_per_batch=frames_per_batch, total_frames=args.frames,
        auto_register_policy_transforms=False,  # a feed-forward policy needs no InitTracker
    )  # fmt: skip
    run_dir = new_run_dir(args.logdir)
    writer = SummaryWriter(run_dir)
    history: dict[str, list[tuple[int, float]]] = {"return": [], "sparsity": []}
    frames = 0
    for batch in collector:
        frames += batch.numel()
        with torch.no_grad():
            advantage(batch)
        for _ in range(4):
            losses = loss(batch)
            total = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            sparsifier.step()  # sparse
        done = batch["next", "done"].squeeze(-1)
        mean_return = batch["next", "episode_reward"][done].mean().item() if done.any() else 0.0
        stats = sparsifier.stats()
        writer.add_scalar("charts/episode_return", mean_return, frames)
        writer.add_scalar("losses/total", total.item(), frames)
        for name, value in stats.items():
            writer.add_scalar(name, value, frames)
        history["return"].append((frames, mean_return))
        history["sparsity"].append((frames, stats["sparsity/total"]))
        print(
            f"frames {frames:>6}  return {mean_return:7.1f}  sparsity {stats['sparsity/total']:.3f}"
        )
    collector.shutdown()
    writer.close()
    return save_figure(history, run_dir / "summary.png")


def new_run_dir(parent: Path) -> Path:
    """Create and return ``parent/run<N>`` for the smallest ``N`` not taken yet.

    Creating the folder claims it, so concurrent runs never share one.

    Examples:
        >>> import tempfile
        >>> parent = Path(tempfile.mkdtemp())
        >>> new_run_dir(parent).name, new_run_dir(parent).name
        ('run0', 'run1')
    """
    parent.mkdir(parents=True, exist_ok=True)
    index = 0
    while True:
        try:
            (parent / f"run{index}").mkdir()
        except FileExistsError:
            index += 1
        else:
            return parent / f"run{index}"


def save_figure(history: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(history), figsize=(4 * len(history), 3))
    for axis, (name, points) in zip(axes, history.items(), strict=True):
        axis.plot(*zip(*points, strict=True))
        axis.set(xlabel="environment frames", title=name)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"Run folder: {path.parent}  (tensorboard --logdir {path.parent})\nFigure: {path}")
    return path


if __name__ == "__main__":
    main()
