"""The IMP study: rounds of train -> prune -> rewind -> retrain, for RL and for behaviour cloning.

For one task and seed, :func:`run_seed` follows Vischer et al. (2022):

1. **Round 0 (dense).** The policy network (:class:`~torchrl_sparse.modules.ControlPolicy`) is
   initialised once (``initial.pt``) and trained by PPO (:class:`~torchrl_sparse.lightning.PPO`).
   The trained dense agent is the **expert**: its greedy actions on ``bc_transitions``
   transitions form the behaviour-cloning dataset (``expert/``, TorchRL storage with the
   environment's specs). The same initial network is then trained by behaviour cloning
   (:class:`~torchrl_sparse.lightning.BehaviourCloning`).
2. **Round r >= 1.** For each paradigm, the ticket's mask prunes ``prune_fraction`` of the
   remaining weights of the previous round's trained ticket by magnitude; every condition
   (:data:`~torchrl_sparse.lottery.tickets.CONDITIONS`: the ticket and its three baselines)
   starts from the rewound weights (the initialisation, or the weights after
   ``rewind_step`` optimizer steps of round 0) under its mask, optionally rescaled to each
   layer's dense variance, and is trained again with the mask held fixed (pruned weights stay
   zero in weights, gradients and optimizer state).

Each training is scored by ``eval_episodes`` greedy episodes. Everything is written under
``<out>/<task>/seed<N>/`` as it completes (``<paradigm>/round<r>/<condition>.json``, the masks and
the ticket's trained weights), so an interrupted study resumes at the training it stopped in.

Units: PPO trains ``rl_frames`` environment frames per training; behaviour cloning trains
``bc_epochs`` passes over the dataset; ``rewind_step`` counts optimizer steps of either.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchrl_sparse.experiments.summary import write_json
from torchrl_sparse.lottery.tickets import (
    CONDITIONS,
    condition_weights,
    magnitude_prune,
    sparsity,
)

__all__ = ["PARADIGMS", "LotteryStudy", "differing_settings", "run_seed", "seed_dir"]

PARADIGMS = ("rl", "bc")
"""Reinforcement learning (PPO) and behaviour cloning of the round-0 RL expert."""

_CONFIG_FILE = "study.json"


@dataclass
class LotteryStudy:
    """Settings of a lottery-ticket study (see the module docstring for the procedure).

    Args:
        task: a gymnasium id with vector observations (``CartPole-v1``, ``Acrobot-v1``,
            ``Pendulum-v1``, ...).
        out: the study's directory; each seed writes ``<out>/<task>/seed<N>/``.
        rounds: pruning rounds after the dense round 0 (sparsity ``1 - (1 - f)^rounds``).
        prune_fraction: fraction ``f`` of the remaining weights pruned per round, in ``(0, 1)``.
        scope: ``"layer"`` (every layer loses ``f`` of its weights) or ``"global"``.
        rewind_step: optimizer steps of round 0 whose weights survivors are rewound to (0:
            the initialisation).
        rescale: rescale surviving initial weights to each layer's dense variance.
        paradigms: any of ``"rl"``, ``"bc"`` (``"bc"`` needs ``"rl"``: the expert).
        conditions: any of the ticket and its baselines.
        hidden_sizes: the policy network's hidden layers.
        rl_frames: PPO training length in environment frames (per training).
        bc_epochs: behaviour-cloning epochs (passes over the dataset) per training.
        bc_transitions: size of the expert dataset.
        eval_episodes: greedy evaluation episodes per training.
        ppo: extra keyword arguments of :class:`~torchrl_sparse.lightning.PPO`.
        bc: extra keyword arguments of :class:`~torchrl_sparse.lightning.BehaviourCloning`.

    Raises:
        ValueError: on a bad setting (named, with what is allowed), before anything runs.

    Examples:
        >>> study = LotteryStudy("CartPole-v1", out="runs/lottery", rounds=8)
        >>> round(study.sparsity_at(8), 3), study.optimizer_steps("rl")
        (0.832, 1568)
        >>> LotteryStudy("CartPole-v1", out="x", prune_fraction=1.5)
        Traceback (most recent call last):
            ...
        ValueError: prune_fraction must lie in (0, 1), got 1.5.
    """

    task: str
    out: str
    rounds: int = 8
    prune_fraction: float = 0.2
    scope: str = "layer"
    rewind_step: int = 0
    rescale: bool = False
    paradigms: tuple[str, ...] = PARADIGMS
    conditions: tuple[str, ...] = CONDITIONS
    hidden_sizes: tuple[int, ...] = (64, 64)
    rl_frames: int = 50_000
    bc_epochs: int = 20
    bc_transitions: int = 10_000
    eval_episodes: int = 20
    ppo: dict[str, Any] = field(default_factory=dict)
    bc: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.paradigms = tuple(self.paradigms)
        self.conditions = tuple(self.conditions)
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if not 0.0 < self.prune_fraction < 1.0:
            raise ValueError(f"prune_fraction must lie in (0, 1), got {self.prune_fraction!r}.")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds!r}.")
        if self.scope not in ("layer", "global"):
            raise ValueError(f"Unknown scope {self.scope!r}; allowed: ['layer', 'global'].")
        unknown = [p for p in self.paradigms if p not in PARADIGMS]
        if unknown or not self.paradigms:
            raise ValueError(f"Unknown paradigms {unknown}; allowed: {list(PARADIGMS)}.")
        if "bc" in self.paradigms and "rl" not in self.paradigms:
            raise ValueError("paradigm 'bc' clones the round-0 RL agent: include 'rl' too.")
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown or "ticket" not in self.conditions:
            raise ValueError(
                f"conditions must include 'ticket' and lie in {list(CONDITIONS)}; got "
                f"{list(self.conditions)}."
            )
        for name in ("rl_frames", "bc_epochs", "bc_transitions", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}.")
        if self.rewind_step < 0:
            raise ValueError(f"rewind_step must be >= 0, got {self.rewind_step!r}.")
        from torchrl_sparse.lightning.bc import BehaviourCloning
        from torchrl_sparse.lightning.control import PPO

        for name, options, cls, set_here in (
            ("ppo", self.ppo, PPO, {"env_id", "hidden_sizes", "total_frames", "seed"}),
            ("bc", self.bc, BehaviourCloning, {"env_id", "dataset_dir", "hidden_sizes", "seed"}),
        ):
            allowed = set(_signature(cls)) - {"self"} - set_here
            unknown = sorted(set(options) - allowed)
            if unknown:
                raise ValueError(
                    f"Unknown {name} option(s) {unknown}; allowed: {sorted(allowed)} (the study "
                    f"sets {sorted(set_here)} itself)."
                )
        # Builds the environment and networks once: any bad PPO value fails here, not in a worker.
        PPO(env_id=self.task, hidden_sizes=list(self.hidden_sizes), **self.ppo)
        for paradigm in self.paradigms:
            steps = self.optimizer_steps(paradigm)
            if self.rewind_step > steps:
                raise ValueError(
                    f"rewind_step={self.rewind_step} is beyond training: a {paradigm} training "
                    f"makes {steps} optimizer steps (allowed: 0 to {steps})."
                )

    def sparsity_at(self, round_index: int) -> float:
        """Nominal sparsity after ``round_index`` rounds."""
        return 1.0 - (1.0 - self.prune_fraction) ** round_index

    def optimizer_steps(self, paradigm: str) -> int:
        """Optimizer steps of one training of ``paradigm`` (the unit of ``rewind_step``)."""
        if paradigm == "rl":
            from torchrl_sparse.lightning.control import PPO

            defaults = {k: v.default for k, v in _signature(PPO).items()}
            args = {**defaults, **self.ppo}
            per_batch = math.ceil(args["frames_per_batch"] / args["num_envs"]) * args["num_envs"]
            batches = math.ceil(self.rl_frames / per_batch)
            return batches * args["epochs"] * math.ceil(per_batch / args["minibatch_size"])
        from torchrl_sparse.lightning.bc import BehaviourCloning

        batch_size = {**{k: v.default for k, v in _signature(BehaviourCloning).items()}, **self.bc}
        return self.bc_epochs * math.ceil(self.bc_transitions / batch_size["batch_size"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (what ``study.json`` records)."""
        data = dataclasses.asdict(self)
        for key in ("paradigms", "conditions", "hidden_sizes"):
            data[key] = list(data[key])
        return data


def _signature(cls: type) -> dict[str, Any]:
    import inspect

    return dict(inspect.signature(cls.__init__).parameters)


def seed_dir(study: LotteryStudy, seed: int) -> Path:
    """``<out>/<task>/seed<seed>``: everything one seed of the study writes."""
    return Path(study.out) / study.task / f"seed{seed}"


def _check_resumable(study: LotteryStudy, directory: Path) -> None:
    path = directory / _CONFIG_FILE
    if not path.exists():
        write_json(path, study.to_dict())
        return
    recorded = json.loads(path.read_text())
    current = json.loads(json.dumps(study.to_dict()))  # tuples -> lists, as recorded
    differing = differing_settings(recorded, current)
    if differing:
        details = ", ".join(f"{k}: {recorded.get(k)!r} -> {current[k]!r}" for k in differing)
        raise ValueError(
            f"{directory} holds a study with other settings ({details}): choose another --out, "
            "or run it with its own settings."
        )
    if current["rounds"] != recorded["rounds"]:
        write_json(path, current)


def differing_settings(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Settings that differ between two studies' ``study.json``.

    More ``rounds`` may be added to a study, and the same study may be reached by another path
    (``out``); nothing else may change.

    Examples:
        >>> differing_settings({"rounds": 8, "out": "a", "scope": "layer"},
        ...                    {"rounds": 9, "out": "b", "scope": "global"})
        ['scope']
    """
    keys = (set(recorded) | set(current)) - {"rounds", "out"}
    return sorted(k for k in keys if recorded.get(k) != current.get(k))


def run_seed(study: LotteryStudy, seed: int, log: Any = print) -> Path:
    """Run (or resume) one seed of the study; returns its directory."""
    directory = seed_dir(study, seed)
    directory.mkdir(parents=True, exist_ok=True)
    _check_resumable(study, directory)
    initial_path = directory / "initial.pt"
    if not initial_path.exists():
        torch.save(_initial_policy(study, seed), initial_path)
    initial = torch.load(initial_path, weights_only=True)
    weights = {k: v for k, v in initial.items() if k.endswith("weight")}

    for paradigm in study.paradigms:
        if paradigm == "bc":
            _ensure_expert(study, seed, directory, log)
        base = directory / paradigm
        dense = {k: torch.ones_like(v, dtype=torch.bool) for k, v in weights.items()}
        _train_round(study, seed, paradigm, 0, initial, dense, ("ticket",), log)
        rewind_to = torch.load(base / "rewind.pt", weights_only=True)
        masks = dense
        for r in range(1, study.rounds + 1):
            masks_path = base / f"round{r}" / "masks.pt"
            if masks_path.exists():
                masks = torch.load(masks_path, weights_only=True)
            else:
                trained = torch.load(
                    base / f"round{r - 1}" / "ticket_weights.pt", weights_only=True
                )
                masks = magnitude_prune(trained, masks, study.prune_fraction, study.scope)
                masks_path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(masks, masks_path)
            _train_round(study, seed, paradigm, r, rewind_to, masks, study.conditions, log)
    return directory


def _initial_policy(study: LotteryStudy, seed: int) -> dict[str, torch.Tensor]:
    from torchrl_sparse.lightning.control import PPO

    module = PPO(env_id=study.task, hidden_sizes=list(study.hidden_sizes), seed=seed, **study.ppo)
    return {k: v.detach().clone() for k, v in module.policy_network.state_dict().items()}


def _train_round(
    study: LotteryStudy,
    seed: int,
    paradigm: str,
    round_index: int,
    rewind_to: dict[str, torch.Tensor],
    ticket_masks: dict[str, torch.Tensor],
    conditions: Iterable[str],
    log: Any,
) -> None:
    folder = seed_dir(study, seed) / paradigm / f"round{round_index}"
    folder.mkdir(parents=True, exist_ok=True)
    for condition in conditions:
        result_path = folder / f"{condition}.json"
        if result_path.exists():
            continue
        # One generator per (seed, round, condition): a resumed study draws the same baselines.
        generator = torch.Generator().manual_seed(
            hash_seed(seed, round_index, CONDITIONS.index(condition))
        )
        masks, weights = condition_weights(
            rewind_to, ticket_masks, condition, generator, rescale=study.rescale and round_index > 0
        )
        # A fresh initialisation renews every parameter, biases and log-std included.
        base = (
            _initial_policy(study, int(torch.randint(2**31, (1,), generator=generator)))
            if condition == "random_reinit"
            else rewind_to
        )
        start = {**base, **weights}
        clock = time.perf_counter()
        score, trained, snapshot = _train(study, seed, paradigm, start, masks, folder / condition)
        if condition == "ticket":  # the next round prunes it; round 0's is the BC expert
            torch.save(trained, folder / "ticket_weights.pt")
        if round_index == 0:
            torch.save(snapshot, folder.parent / "rewind.pt")
        result = {
            "paradigm": paradigm,
            "seed": seed,
            "round": round_index,
            "condition": condition,
            "sparsity": sparsity(masks),
            "return": score,
            "wall_time_s": time.perf_counter() - clock,
        }
        write_json(result_path, result)
        log(
            f"[lottery] {study.task} seed{seed} {paradigm} round {round_index} {condition}: "
            f"sparsity {result['sparsity']:.3f}, return {score:.1f}"
        )


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash``).

    Examples:
        >>> hash_seed(0, 1, 2) == hash_seed(0, 1, 2), hash_seed(0, 1, 2) == hash_seed(0, 2, 1)
        (True, False)
    """
    import numpy as np

    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> 1)


def _train(
    study: LotteryStudy,
    seed: int,
    paradigm: str,
    start: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    log_dir: Path,
) -> tuple[float, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Train the policy from ``start`` under ``masks``; its score, weights and rewind snapshot."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    from torchrl_sparse.lightning.control import PPO, evaluate_policy
    from torchrl_sparse.lottery.callbacks import HoldMasks, SnapshotAtStep

    # The study scores every training itself (below): no evaluation inside the trainings.
    if paradigm == "rl":
        module = PPO(
            **{"eval_every_frames": 0, **study.ppo},
            env_id=study.task,
            hidden_sizes=list(study.hidden_sizes),
            total_frames=study.rl_frames,
            seed=seed,
        )
        epochs = 1
    else:
        from torchrl_sparse.lightning.bc import BehaviourCloning

        module = BehaviourCloning(
            **{"eval_episodes": 0, **study.bc},
            env_id=study.task,
            dataset_dir=str(seed_dir(study, seed) / "expert"),
            hidden_sizes=list(study.hidden_sizes),
            seed=seed,
        )
        epochs = study.bc_epochs
    module.policy_network.load_state_dict(start)
    snapshot = SnapshotAtStep(study.rewind_step)
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=TensorBoardLogger(str(log_dir.parent), name=log_dir.name, version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[HoldMasks(masks), snapshot],
    )
    trainer.fit(module)
    returns = evaluate_policy(
        module.actor, study.task, study.eval_episodes, seed=10_000 + seed, deterministic=True
    )
    trained = {k: v.detach().clone() for k, v in module.policy_network.state_dict().items()}
    return sum(returns) / len(returns), trained, snapshot.weights or trained


def _ensure_expert(study: LotteryStudy, seed: int, directory: Path, log: Any) -> None:
    """The BC dataset: greedy actions of the trained dense RL agent (round 0's ticket)."""
    from torchrl_sparse.imitation import METADATA_FILE, collect_expert_dataset

    expert_dir = directory / "expert"
    if (expert_dir / METADATA_FILE).exists():
        return

    from torchrl_sparse.lightning.control import PPO

    module = PPO(env_id=study.task, hidden_sizes=list(study.hidden_sizes), seed=seed, **study.ppo)
    module.policy_network.load_state_dict(
        torch.load(directory / "rl" / "round0" / "ticket_weights.pt", weights_only=True)
    )
    from torchrl_sparse.lightning.bc import make_gym_env

    env = make_gym_env(study.task)  # the environment BC reads its specs from
    dataset = collect_expert_dataset(
        module.actor, env, study.bc_transitions, expert_dir, deterministic=True, seed=seed
    )
    env.close()
    log(
        f"[lottery] {study.task} seed{seed}: expert dataset of {len(dataset)} transitions, "
        f"expert return {dataset.expert_return:.1f}"
    )
