"""MinAtar DQN training frames/s: our Lightning ``DQN`` against a bare PyTorch loop.

Both train the same algorithm for the same frames in the same process, with the module's
defaults (Dopamine's MinAtar DQN): 4 copies of the game with sticky actions (0.1), the
game's minimal action set, the MinAtar Q-network, epsilon-greedy acting with ``DQN.epsilon``'s
schedule, ``uint8`` observations in a 100k replay buffer, one Adam step (lr 1e-4, eps
3.125e-4, fused) on a batch of 32 per 4 frames after ``learning_starts`` frames of random
actions, Huber loss on ``r + gamma (1 - terminated) max_a Q_target(s', a)``, and a hard copy of
the target network every 1,000 frames. Evaluation is off.

* **ours**: ``Trainer(max_epochs=1, ...).fit(DQN("minatar", game, ...))``: TorchRL collector
  over ``MinAtarEnv``, ``EGreedyModule``, ``LazyMemmapStorage`` replay buffer, ``DQNLoss``,
  Lightning's loop and our per-batch logging. Only ``fit`` is timed (not building the module).
* **ours + RigL 90%** (``--rigl``, the default): the same with a ``SparsityCallback`` holding the
  Q-network at 90% sparsity, RigL topology updates every 1,000 frames from the first gradient
  step on (RigL keeps a dense gradient copy at every backward pass).
* **bare**: the same updates as a plain loop: raw ``minatar.Environment`` objects stepped in
  Python, a preallocated ``uint8`` ring buffer of tensors, ``MinAtarQNetwork`` and a copy of it
  as target, ``F.smooth_l1_loss``. No TorchRL, TensorDict or Lightning. Updates interleave
  with environment steps (one per 4 frames) rather than 16 after each batch of 64 frames: the
  same number of updates on the same cadence of ``learning_starts`` and target copies.

frames/s = frames / seconds; ``ours/bare`` is the ratio of frames/s (1.0: no overhead). On a
busy machine, the run is noisy: compare rows of one run, not across runs.

Run: ``python benchmarks/bench_dqn_throughput.py`` (about 1-2 minutes on 2 cores; ``--frames``,
``--game``, ``--threads``, ``--no-rigl``).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import logging
import math
import time
from types import SimpleNamespace

import lightning.pytorch as pl
import minatar
import numpy as np
import torch
from torch.nn import functional as F

from torchrl_sparse.envs.minatar import MINATAR_GAMES
from torchrl_sparse.lightning import DQN, SparsityCallback
from torchrl_sparse.modules.qnets import MinAtarQNetwork
from torchrl_sparse.sparse import ConstantSchedule, RigL

# The module's defaults, so the bare loop follows them if they change.
DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(DQN.__init__).parameters.items()
    if param.default is not inspect.Parameter.empty
}


def rounded_frames(frames: int) -> int:
    """``frames`` rounded up to whole collector batches: what ``DQN`` actually trains."""
    per_batch = math.ceil(DEFAULTS["frames_per_batch"] / DEFAULTS["num_envs"])
    per_batch *= DEFAULTS["num_envs"]
    return math.ceil(frames / per_batch) * per_batch


def ours(game: str, frames: int, learning_starts: int, seed: int, rigl: bool) -> tuple[int, float]:
    """Frames trained and seconds of ``Trainer.fit`` of our ``DQN`` module."""
    module = DQN(
        "minatar",
        game,
        total_frames=frames,
        learning_starts=learning_starts,
        eval_every_frames=0,
        seed=seed,
    )
    callbacks: list[pl.Callback] = []
    if rigl:
        # The first topology update must come after a gradient exists (the callback checks).
        schedule = ConstantSchedule(update_every=1000, start=module.first_gradient_frame)
        callbacks.append(SparsityCallback({"value_network.*": 0.9}, method=RigL(schedule=schedule)))
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.fit(module)
    seconds = time.perf_counter() - start
    return module.frames, seconds


def bare(game: str, frames: int, learning_starts: int, seed: int) -> tuple[int, float]:
    """Frames trained and seconds of the same DQN as a plain PyTorch loop."""
    h = SimpleNamespace(**{**DEFAULTS, "learning_starts": learning_starts})
    n = h.num_envs
    start = time.perf_counter()
    torch.manual_seed(seed)
    envs = [minatar.Environment(MINATAR_GAMES[game], sticky_action_prob=0.1) for _ in range(n)]
    for i, env in enumerate(envs):
        env.seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
        env.reset()
    action_set = list(envs[0].minimal_action_set())
    num_actions = len(action_set)
    channels = envs[0].state_shape()[-1]
    online = MinAtarQNetwork(channels, num_actions)
    target = copy.deepcopy(online).requires_grad_(False)
    optimizer = torch.optim.Adam(online.parameters(), lr=h.lr, eps=h.optimizer_eps, fused=True)

    capacity = h.buffer_size
    obs_buf = torch.zeros((capacity, channels, 10, 10), dtype=torch.uint8)
    next_buf = torch.zeros_like(obs_buf)
    action_buf = torch.zeros(capacity, dtype=torch.int64)
    reward_buf = torch.zeros(capacity, dtype=torch.float32)
    terminated_buf = torch.zeros(capacity, dtype=torch.float32)
    obs_np, next_np, action_np = obs_buf.numpy(), next_buf.numpy(), action_buf.numpy()
    reward_np, terminated_np = reward_buf.numpy(), terminated_buf.numpy()
    size = pointer = 0

    current = np.stack([env.state().transpose(2, 0, 1) for env in envs]).astype(np.uint8)
    frame = 0
    while frame < frames:
        epsilon = DQN.epsilon(SimpleNamespace(hparams=h), frame)
        with torch.no_grad():
            greedy = online(torch.from_numpy(current)).argmax(-1)
        explore = torch.rand(n) < epsilon
        actions = torch.where(explore, torch.randint(num_actions, (n,)), greedy).tolist()
        for i, (env, action) in enumerate(zip(envs, actions, strict=True)):
            reward, terminated = env.act(action_set[action])
            slot = (pointer + i) % capacity
            obs_np[slot] = current[i]
            action_np[slot] = action
            next_np[slot] = env.state().transpose(2, 0, 1)
            reward_np[slot] = reward
            terminated_np[slot] = terminated
            if terminated:
                env.reset()
                current[i] = env.state().transpose(2, 0, 1)
            else:
                current[i] = next_np[slot]
        pointer = (pointer + n) % capacity
        size = min(size + n, capacity)
        previous, frame = frame, frame + n

        for update_frame in range(previous + 1, frame + 1):
            if update_frame % h.update_every_frames or update_frame <= h.learning_starts:
                continue
            index = torch.randint(size, (h.batch_size,))
            with torch.no_grad():
                next_value = target(next_buf[index]).max(-1).values
                y = reward_buf[index] + h.gamma * (1.0 - terminated_buf[index]) * next_value
            q = online(obs_buf[index]).gather(-1, action_buf[index].unsqueeze(-1)).squeeze(-1)
            loss = F.smooth_l1_loss(q, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            previous_update = update_frame - h.update_every_frames
            if update_frame // h.target_update_every_frames > (
                previous_update // h.target_update_every_frames
            ):
                target.load_state_dict(online.state_dict())
    return frame, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", default="Breakout", choices=sorted(MINATAR_GAMES))
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rigl", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in ("torchrl", "lightning.pytorch"):  # their INFO lines would split the table
        logging.getLogger(name).setLevel(logging.WARNING)
    frames = rounded_frames(args.frames)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, MinAtar {args.game}, "
        f"{frames:,} frames, learning_starts {args.learning_starts:,}, "
        f"{DEFAULTS['num_envs']} envs, 1 update per {DEFAULTS['update_every_frames']} frames"
    )
    rows = [("bare", *bare(args.game, frames, args.learning_starts, args.seed))]
    rows.append(("ours", *ours(args.game, frames, args.learning_starts, args.seed, False)))
    if args.rigl:
        rows.append(
            ("ours + RigL 90%", *ours(args.game, frames, args.learning_starts, args.seed, True))
        )
    print(f"{'variant':<16}{'frames':>8}{'seconds':>9}{'frames/s':>10}{'ours/bare':>11}")
    bare_fps = rows[0][1] / rows[0][2]
    for name, done, seconds in rows:
        fps = done / seconds
        print(f"{name:<16}{done:>8}{seconds:>9.1f}{fps:>10.0f}{fps / bare_fps:>11.2f}")
    print(f"ratio ours/bare (frames/s): {rows[1][1] / rows[1][2] / bare_fps:.2f}")


if __name__ == "__main__":
    main()
