"""End-to-end multi-task PPO throughput on MiniGrid MT3, with evaluation off.

For each network (MTPPO, MOORE) and condition (dense, GMP to 95%) it trains through the real
Lightning ``Trainer`` with the papers' PPO settings (batches of 2,000 steps of every task, i.e.
6,000 frames on MT3; 8 policy epochs of minibatches of 256 per task; one full-batch critic
step) and reports:

* training frames/s: the median over batches of the module's own ``charts/sps`` (collection
  and updates of a batch, after warm-up batches);
* pure collection frames/s: the same collector and policy with no updates;
* the training overhead on top of collection: ``collection_fps / training_fps - 1``;
* where a batch's time goes: seconds of collection and of updates per batch, and the mean
  time of one gradient step (the papers' settings make 8 epochs x 8 actor steps of 768
  samples and one critic step on the whole batch);
* the same updates written as a bare PyTorch loop (no TorchRL loss, TensorDict or Lightning),
  and how much longer ours take: the part of the update time that is our code's and not the
  networks' arithmetic.

Reference (the official MOORE implementation on MushroomRL, same kind of 2-core machine, its
MT3 defaults, evaluation excluded): about 250 frames/s with MOORE and 500 with MTPPO. Its
defaults are the frames per update used here: 2,000 steps of each of the 3 tasks.
Targets: MOORE >= 1,000 frames/s, MTPPO >= 2,000 frames/s, overhead <= 50%.

Run: ``python benchmarks/bench_ppo_throughput.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import lightning.pytorch as pl
import torch
from torch.distributions import Categorical
from torch.nn import functional as F

from torchrl_sparse.lightning import MultiTaskPPO, SparsityCallback
from torchrl_sparse.lightning.ppo import DEFAULT_ENVS_PER_TASK
from torchrl_sparse.modules import MultiTaskNetwork
from torchrl_sparse.sparse import GMP, CubicSchedule

TARGET_FPS = {"moore": 1000.0, "mtppo": 2000.0}
REFERENCE_FPS = {"moore": 250.0, "mtppo": 500.0}


class _RecordSPS(pl.Callback):
    def __init__(self) -> None:
        self.sps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.sps.append(pl_module.latest["charts/sps"])


def training_fps(
    arch: str, sparse: bool, batches: int, envs_per_task: int
) -> tuple[MultiTaskPPO, float]:
    module = MultiTaskPPO(
        "MT3",
        arch=arch,
        envs_per_task=envs_per_task,
        total_steps_per_task=batches * 2000,
        eval_every_steps_per_task=0,
    )
    record = _RecordSPS()
    callbacks: list[pl.Callback] = [record]
    if sparse:
        schedule = CubicSchedule(start=0.0, end=0.5, update_every=500)
        callbacks.append(
            SparsityCallback(
                {"actor_network.*": 0.95, "critic_network.*": 0.95}, method=GMP(schedule)
            )
        )
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(module)
    return module, statistics.median(record.sps[2:])


def gradient_steps(module: MultiTaskPPO) -> int:
    """Actor and critic optimizer steps per collected batch."""
    hparams = module.hparams
    per_task = module.frames_per_batch // module.num_tasks
    actor = math.ceil(per_task / hparams.policy_minibatch_per_task)
    critic = max(1, per_task // hparams.critic_batch_per_task)
    return hparams.policy_epochs * actor + hparams.critic_epochs * critic


def pure_update_seconds(arch: str, envs_per_task: int, repeats: int = 3) -> float:
    """Seconds for one batch's updates written as a bare PyTorch loop (the floor for ours).

    The same networks, batch, minibatches, PPO settings and fused Adam as ``MultiTaskPPO``,
    without TorchRL's loss, TensorDicts, Lightning or guards: clipped objective plus entropy on
    stratified actor minibatches, full-batch MSE critic steps.
    """
    module = MultiTaskPPO(
        "MT3", arch=arch, envs_per_task=envs_per_task, eval_every_steps_per_task=0
    )
    loader = module.train_dataloader()
    batch = next(iter(loader))
    loader.shutdown()
    with torch.no_grad():
        module.advantage(batch)
    data = batch.reshape(-1)
    hp = module.hparams
    obs, task, action = data["observation"], data["task_id"], data["action"]
    advantage = module._normalise_per_task(data["advantage"], task).squeeze(-1)
    target = data["value_target"]
    actor, critic = (
        next(m for m in net.modules() if isinstance(m, MultiTaskNetwork))
        for net in (module.actor, module.critic)
    )
    with torch.no_grad():
        old_log_prob = Categorical(logits=actor(obs, task)).log_prob(action)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=hp.lr, fused=True)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=hp.lr, fused=True)
    per_task = [(task == t).nonzero().view(-1) for t in task.unique()]
    chunks = max(math.ceil(len(idx) / hp.policy_minibatch_per_task) for idx in per_task)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(hp.critic_epochs):
            value_loss = F.mse_loss(critic(obs, task), target)
            critic_opt.zero_grad()
            value_loss.backward()
            critic_opt.step()
        for _ in range(hp.policy_epochs):
            parts = [idx[torch.randperm(len(idx))].tensor_split(chunks) for idx in per_task]
            for i in range(chunks):
                mb = torch.cat([p[i] for p in parts])
                dist = Categorical(logits=actor(obs[mb], task[mb]))
                ratio = (dist.log_prob(action[mb]) - old_log_prob[mb]).exp()
                clipped = ratio.clamp(1 - hp.clip_epsilon, 1 + hp.clip_epsilon)
                objective = torch.min(ratio * advantage[mb], clipped * advantage[mb]).mean()
                loss = -objective - hp.entropy_coef * dist.entropy().mean()
                actor_opt.zero_grad()
                loss.backward()
                actor_opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def collection_fps(arch: str, batches: int, envs_per_task: int) -> float:
    module = MultiTaskPPO(
        "MT3", arch=arch, envs_per_task=envs_per_task, eval_every_steps_per_task=0
    )
    loader = module.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # warm-up
    rates = []
    for _ in range(batches - 1):
        start = time.perf_counter()
        batch = next(iterator)
        rates.append(batch.numel() / (time.perf_counter() - start))
    loader.shutdown()
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--envs-per-task", type=int, default=DEFAULT_ENVS_PER_TASK)
    args = parser.parse_args(argv)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, MT3, "
        f"{args.envs_per_task} envs per task, {args.batches} batches of 2,000 steps per task "
        "(6,000 frames)"
    )
    print(f"{'network':<8}{'condition':<10}{'train fps':>10}{'collect fps':>12}"
          f"{'overhead':>10}{'s/batch collect':>16}{'update':>8}{'bare update':>12}"
          f"{'ours/bare':>10}{'ms/grad step':>13}{'vs MOORE impl':>15}"
          f"{'fps target':>11}")  # fmt: skip
    missed_fps, overheads = [], []
    for arch in ("mtppo", "moore"):
        collect = collection_fps(arch, args.batches, args.envs_per_task)
        bare_s = pure_update_seconds(arch, args.envs_per_task)
        for sparse in (False, True):
            module, train = training_fps(arch, sparse, args.batches, args.envs_per_task)
            condition = f"{arch}/{'gmp' if sparse else 'dense'}"
            overhead = collect / train - 1.0
            overheads.append(overhead)
            if train < TARGET_FPS[arch]:
                missed_fps.append(condition)
            frames = module.frames_per_batch
            collect_s, update_s = frames / collect, frames / train - frames / collect
            print(f"{arch:<8}{'gmp' if sparse else 'dense':<10}{train:>10.0f}{collect:>12.0f}"
                  f"{overhead:>10.0%}{collect_s:>16.3f}{update_s:>8.3f}{bare_s:>12.3f}"
                  f"{update_s / bare_s:>10.2f}"
                  f"{1000 * update_s / gradient_steps(module):>13.1f}"
                  f"{train / REFERENCE_FPS[arch]:>14.1f}x"
                  f"{'MET' if train >= TARGET_FPS[arch] else 'MISS':>11}")  # fmt: skip
    print("frames/s targets (MOORE >= 1,000, MTPPO >= 2,000):",
          "MET" if not missed_fps else f"MISSED by {missed_fps}")  # fmt: skip
    print(f"overhead target (<= 50%): {'MET' if max(overheads) <= 0.5 else 'MISSED'} "
          f"(worst {max(overheads):.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
