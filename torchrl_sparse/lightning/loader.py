"""A TorchRL collector as a resumable Lightning data source.

Lightning iterates a "dataloader" once per epoch, and a finite TorchRL collector is exhausted
after its first pass. :class:`CollectorLoader` wraps an *endless* collector and hands out a
fixed number of batches per epoch from one persistent iterator. It is a Lightning *stateful*
loader: its ``state_dict`` (environment simulator state, the collector's carried step data
and the torch generator) travels in every checkpoint, so a resumed run continues the same episodes.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase

from torchrl_sparse._compat import collector_carrier

__all__ = ["CollectorLoader"]


class CollectorLoader:
    """Endless collector, ``batches_per_epoch`` batches per Lightning epoch, checkpointable.

    Args:
        env_factory: builds the training environment (called once, lazily).
        policy: the acting policy (the actor, shared with the loss).
        frames_per_batch: frames per batch.
        batches_per_epoch: batches Lightning sees per epoch.

    Examples:
        >>> from torchrl.envs import GymEnv
        >>> from torchrl.envs.utils import RandomPolicy
        >>> env = GymEnv("CartPole-v1")
        >>> loader = CollectorLoader(lambda: env, RandomPolicy(env.action_spec), 32, 2)
        >>> [batch.numel() for batch in loader], len(loader)
        ([32, 32], 2)
    """

    def __init__(
        self,
        env_factory: Callable[[], EnvBase],
        policy: Callable[[TensorDictBase], TensorDictBase],
        frames_per_batch: int,
        batches_per_epoch: int,
    ) -> None:
        self.env_factory = env_factory
        self.policy = policy
        self.frames_per_batch = frames_per_batch
        self.batches_per_epoch = batches_per_epoch
        self._collector: Collector | None = None
        self._iterator: Iterator[TensorDictBase] | None = None
        self._pending_state: dict[str, Any] | None = None

    @property
    def collector(self) -> Collector:
        if self._collector is None:
            env = self.env_factory()
            # Feed-forward policies: torchrl 0.15 would otherwise append an InitTracker.
            self._collector = Collector(
                env,
                self.policy,
                frames_per_batch=self.frames_per_batch,
                total_frames=-1,
                auto_register_policy_transforms=False,
            )
            if self._pending_state is not None:
                self._restore(self._pending_state)
                self._pending_state = None
        return self._collector

    @property
    def env(self) -> EnvBase:
        return self.collector.env

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[TensorDictBase]:
        if self._iterator is None:
            self._iterator = iter(self.collector)
        for _ in range(self.batches_per_epoch):
            try:
                batch = next(self._iterator)
            except RuntimeError as error:
                if "inf" in str(error) or "nan" in str(error):
                    # e.g. torch.multinomial on NaN probabilities once the policy diverged.
                    raise FloatingPointError(
                        f"Collecting a batch hit non-finite values ({error}): the policy has "
                        "diverged; stopping, the last checkpoint is intact."
                    ) from error
                raise
            yield batch

    def shutdown(self) -> None:
        """Stop the collector and close its environment."""
        if self._collector is not None:
            self._collector.shutdown()
            self._collector = None
            self._iterator = None

    # Lightning's stateful-dataloader protocol.
    def state_dict(self) -> dict[str, Any]:
        """The environments' simulator state, the collector's carried step data and RNG.

        Pickled into bytes: a simulator state holds Python objects that ``torch.load`` with
        ``weights_only=True`` (Lightning's default when resuming) would refuse.
        """
        collector = self.collector
        base = collector.env.base_env if hasattr(collector.env, "base_env") else collector.env
        # The next batch is sampled with the global torch generator: restoring it right
        # before collecting (after the collector's own construction) replays the same actions.
        state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
        if hasattr(base, "simulator_state"):
            state["simulator"] = base.simulator_state()
        # The collector carries the last step's (transformed) data into the next rollout; it
        # has no public accessor (see torchrl_sparse._compat).
        carrier = collector_carrier(collector)
        state["carrier"] = carrier.clone()
        return {"pickled": pickle.dumps(state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._collector is None:
            self._pending_state = state
        else:
            self._restore(state)

    def _restore(self, pickled: dict[str, Any]) -> None:
        collector = self._collector
        assert collector is not None
        state = pickle.loads(pickled["pickled"])
        base = collector.env.base_env if hasattr(collector.env, "base_env") else collector.env
        if "simulator" in state:
            if not hasattr(base, "load_simulator_state"):
                raise ValueError(
                    f"The checkpoint holds a simulator state but {type(base).__name__} cannot "
                    "load one: was it written by another environment suite?"
                )
            base.load_simulator_state(state["simulator"])
        with torch.no_grad():
            collector_carrier(collector).update_(state["carrier"])
        torch.set_rng_state(state["torch_rng"])
