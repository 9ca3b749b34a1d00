"""Lightning callbacks for plasticity: the metric monitor and the interventions.

They build the objects of :mod:`torchrl_sparse.plasticity` on the LightningModule's networks,
which the module names through ``networks()`` (``{"actor": (module, optimizer index), ...}``,
for interventions), ``monitored_networks()`` (``{"actor": module, ...}``, for metrics; SAC adds
its first online Q-network as a :class:`~torchrl_sparse.objectives.StackedNetworkView`) and
``feature_modules()`` (``{"actor": "<submodule with the shared representation>"}``).
When a :class:`~torchrl_sparse.lightning.SparsityCallback` runs too, its masks are used:
dormant units are counted among units that still have incoming connections, and ReDo never
revives a pruned connection. Cadences count environment frames; every callback keeps its
state in checkpoints. :class:`PlasticityMonitorCallback` also runs a ready-made
:class:`~torchrl_sparse.plasticity.PlasticityMonitor` on any LightningModule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import lightning.pytorch as pl
import torch
from tensordict import TensorDictBase
from torch import nn

from torchrl_sparse.lightning.callbacks import SparsityCallback
from torchrl_sparse.lightning.distributed import broadcast_parameters
from torchrl_sparse.objectives import StackedNetworkView
from torchrl_sparse.plasticity import (
    ALL_METRICS,
    ObservationReservoir,
    PlasticityMonitor,
    ReDo,
    Reset,
    ShrinkAndPerturb,
)

__all__ = ["PlasticityMonitorCallback", "ReDoCallback", "ResetCallback", "ShrinkAndPerturbCallback"]


def _select(available: dict[str, Any], names: list[str], what: str) -> dict[str, Any]:
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"Unknown networks {unknown} {what}; allowed: {list(available)}.")
    return {n: available[n] for n in names}


def _networks(pl_module: pl.LightningModule, names: list[str]) -> dict[str, tuple[nn.Module, int]]:
    return _select(pl_module.networks(), names, "for interventions")


def _mask_provider(trainer: pl.Trainer) -> Any:
    for callback in trainer.callbacks:
        if isinstance(callback, SparsityCallback) and callback.sparsifier is not None:
            return callback.sparsifier
    return None


def _batch_size(batch: Any) -> int:
    if isinstance(batch, TensorDictBase):
        return batch.numel()
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0].shape[0]
    return 1


class PlasticityMonitorCallback(pl.Callback):
    """Log ``plasticity/<network>/...`` metrics every ``every_n_frames`` frames.

    On the multi-task RL modules (:class:`~torchrl_sparse.lightning.MultiTaskPPO`,
    :class:`~torchrl_sparse.lightning.MultiTaskSAC`) the callback builds its monitor on their
    ``monitored_networks()``: metric batches of ``batch_size`` states are sampled from a
    reservoir of the most recent ``reservoir_size`` training observations, as in the papers
    (1,024 states from the last 100k, every 10k frames), and metrics are logged against
    environment frames.

    On any other LightningModule, pass a ready ``monitor``: its cadence counts the size of each
    training batch, its metric batch is the training batch (the inputs of ``(inputs, targets)``
    pairs) unless it has a reservoir, and metrics go to ``log_dict``.

    Metrics never change the training run: they draw from the monitor's own generator (seeded
    with ``seed``, saved in checkpoints with the cadence). A metric that cannot be computed is
    logged as NaN (missing) with one warning, never raised.

    Args:
        metrics: subset of ``torchrl_sparse.plasticity.ALL_METRICS`` (default: all).
        networks: which networks to monitor (``None``: all the module's monitored networks).
        every_n_frames: cadence in environment frames.
        tau: dormancy threshold (0.1 for logging).
        delta: srank threshold.
        batch_size: states per metric batch.
        reservoir_size: recent observations kept to sample from.
        seed: seed of the metrics' generator.
        monitor: a ready monitor, for any LightningModule; its own settings then replace the
            other arguments.

    Examples:
        >>> from torchrl_sparse.lightning import PlasticityMonitorCallback
        >>> PlasticityMonitorCallback(["dormant_ratio", "srank"]).every_n_frames
        10000

        With a ready monitor, for any LightningModule whose ``net`` it watches:

        >>> import torch
        >>> from torchrl_sparse.plasticity import PlasticityMonitor
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        >>> monitor = PlasticityMonitor({"net": net}, ["dormant_ratio"], every=64)
        >>> PlasticityMonitorCallback(monitor=monitor).state_dict()["schedule"]["steps"]
        0
    """

    def __init__(
        self,
        metrics: list[str] | None = None,
        networks: list[str] | None = None,
        every_n_frames: int = 10_000,
        tau: float = 0.1,
        delta: float = 0.01,
        batch_size: int = 1_024,
        reservoir_size: int = 100_000,
        seed: int = 0,
        monitor: PlasticityMonitor | None = None,
    ) -> None:
        if monitor is not None:
            metrics, networks = list(monitor.metrics), list(monitor.modules)
            every_n_frames, tau, delta = monitor.every, monitor.tau, monitor.delta
        self.metrics = list(metrics) if metrics is not None else list(ALL_METRICS)
        # The checkpoint key keeps the historical default; None selects every monitored network
        # of the module (actor and critic for PPO/SAC, the Q-network for DQN).
        self.network_names = networks or ["actor", "critic"]
        self._all_networks = networks is None
        self.every_n_frames = every_n_frames
        self.tau = tau
        self.delta = delta
        self.batch_size = batch_size
        self.reservoir_size = reservoir_size
        self.seed = seed
        self.monitor = monitor
        self._given = monitor is not None
        self.reservoir: ObservationReservoir | None = None
        self._views: list[StackedNetworkView] = []
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            networks=self.network_names, every_n_frames=self.every_n_frames, tau=self.tau
        )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._given:
            self.monitor = self._build(trainer, pl_module)
        assert self.monitor is not None
        if self._pending is not None:
            self.monitor.load_state_dict(self._pending)
            self._pending = None

    def _build(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> PlasticityMonitor:
        available = pl_module.monitored_networks()
        names = list(available) if self._all_networks else self.network_names
        networks = _select(available, names, "to monitor")
        features = {k: v for k, v in pl_module.feature_modules().items() if k in networks}
        provider = _mask_provider(trainer)
        masks = None
        if provider is not None:
            masks = {
                name: module.masks_from(provider)
                if isinstance(module, StackedNetworkView)
                else provider
                for name, module in networks.items()
            }
        self._views = [m for m in networks.values() if isinstance(m, StackedNetworkView)]
        self.reservoir = ObservationReservoir(
            in_keys=list(pl_module.observation_keys), capacity=self.reservoir_size
        )
        return PlasticityMonitor(
            networks,
            self.metrics,
            tau=self.tau,
            delta=self.delta,
            every=self.every_n_frames,
            batch_size=self.batch_size,
            features=features,
            masks=masks,
            task_key="task_id",
            reservoir=self.reservoir,
            seed=self.seed,
            on_error="warn",
            trained_by=trainer.optimizers,  # refuse a network the optimizers do not train
        )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        *args: Any,
    ) -> None:
        assert self.monitor is not None
        if self.reservoir is not None:
            self.reservoir.record(batch.reshape(-1))
        for view in self._views:
            view.refresh_gradients()
        frames = getattr(pl_module, "frames_per_update", None) or _batch_size(batch)
        # (inputs, targets) pairs from supervised-style loaders: the inputs are the states
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        metrics = self.monitor.step(frames, lambda: inputs)
        if metrics is None:
            return
        scalars = {key: float(value) for key, value in metrics.items()}
        if hasattr(pl_module, "log_frames"):
            pl_module.log_frames(scalars)
        else:
            pl_module.log_dict(scalars, on_step=True)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.monitor is None else self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._pending = state_dict


class _InterventionCallback(pl.Callback, ABC):
    """Builds one intervention per network at fit start and steps it with frames."""

    def __init__(self, networks: list[str] | None, every_n_frames: int) -> None:
        self.network_names = networks or ["actor", "critic"]
        self._all_networks = networks is None
        self.every_n_frames = every_n_frames
        self.interventions: dict[str, Any] = {}
        self.modules: dict[str, nn.Module] = {}
        self._pending: dict[str, Any] = {}

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            networks=self.network_names, every_n_frames=self.every_n_frames
        )

    @abstractmethod
    def build(self, module: nn.Module, optimizer: Any, masks: Any) -> Any:
        """The intervention for one network."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        provider = _mask_provider(trainer)
        names = list(pl_module.networks()) if self._all_networks else self.network_names
        for name, (module, index) in _networks(pl_module, names).items():
            self.interventions[name] = self.build(module, trainer.optimizers[index], provider)
            self.modules[name] = module
            if name in self._pending:
                self.interventions[name].load_state_dict(self._pending.pop(name))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        *args: Any,
    ) -> None:
        # The latest batch (not a reservoir) decides which units are dormant, so a resumed
        # run makes the same decisions as an uninterrupted one.
        states = batch.reshape(-1)
        for name, intervention in self.interventions.items():
            stats = intervention.step(pl_module.frames_per_update, lambda: states)
            if stats:
                # Re-initialisation draws on each rank's generator: rank 0's weights win.
                broadcast_parameters(self.modules[name])
                pl_module.log_frames({f"plasticity/{name}/{k}": float(v) for k, v in stats.items()})

    def state_dict(self) -> dict[str, Any]:
        return {name: i.state_dict() for name, i in self.interventions.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)


class ReDoCallback(_InterventionCallback):
    """ReDo (Sokar et al.): re-initialise dormant units every ``every_n_frames`` frames.

    Incoming weights of units with score ``<= tau`` are re-initialised (only active entries in
    a sparse layer), outgoing weights and biases zeroed, their optimizer state reset.

    Args:
        every_n_frames: period (5,000 in Todorov et al.).
        tau: dormancy threshold (0.001 in Todorov et al.).
        networks: which networks (``None``: all the module's ``networks()``).

    Examples:
        >>> from torchrl_sparse.lightning import ReDoCallback
        >>> ReDoCallback().tau
        0.001
    """

    def __init__(
        self, every_n_frames: int = 5_000, tau: float = 0.001, networks: list[str] | None = None
    ) -> None:
        super().__init__(networks, every_n_frames)
        self.tau = tau

    def build(self, module: nn.Module, optimizer: Any, masks: Any) -> ReDo:
        return ReDo(module, optimizer, tau=self.tau, every=self.every_n_frames, masks=masks)


def head_output_layers(module: nn.Module) -> list[str]:
    """Names of the last ``Linear`` of every task head (``...head.heads.<task>``) in ``module``.

    Raises:
        ValueError: if ``module`` has no multi-head ``head.heads`` with ``Linear`` layers.

    Examples:
        >>> from torchrl_sparse.modules import make_ppo_actor
        >>> head_output_layers(make_ppo_actor("MT3", layer_norm="heads"))[0]
        'module.0.module.head.heads.0.3'
    """
    names = []
    for name, head in module.named_modules():
        if name.rsplit(".", 2)[-2:-1] == ["heads"] and name.rsplit(".", 1)[-1].isdigit():
            linears = [n for n, m in head.named_modules() if isinstance(m, nn.Linear)]
            if linears:
                names.append(f"{name}.{linears[-1]}" if linears[-1] else name)
    if not names:
        raise ValueError(
            f"{type(module).__name__} has no task heads (submodules '...head.heads.<task>' with "
            "Linear layers): give ResetCallback(layers=[...]) explicitly."
        )
    return names


class ResetCallback(_InterventionCallback):
    """Reset: re-initialise chosen layers (and their optimizer state) on a schedule.

    Args:
        layers: layer names or globs; by default the output layer (last ``Linear``) of every
            task head, wherever LayerNorm or activations sit in the head.
        every_n_frames: period (100,000 in Todorov et al.).
        max_resets: at most this many resets (2 in Todorov et al.).
        networks: which networks (``None``: all the module's ``networks()``).

    Examples:
        >>> from torchrl_sparse.lightning import ResetCallback
        >>> ResetCallback().max_resets
        2
    """

    def __init__(
        self,
        layers: list[str] | None = None,
        every_n_frames: int = 100_000,
        max_resets: int | None = 2,
        networks: list[str] | None = None,
    ) -> None:
        super().__init__(networks, every_n_frames)
        self.layers = layers
        self.max_resets = max_resets

    def build(self, module: nn.Module, optimizer: Any, masks: Any) -> Reset:
        return Reset(
            module,
            self.layers or head_output_layers(module),
            optimizer,
            every=self.every_n_frames,
            max_resets=self.max_resets,
            masks=masks,
        )


class ShrinkAndPerturbCallback(_InterventionCallback):
    """Shrink-and-perturb (Ash & Adams): ``w <- shrink * w + perturb * w_fresh_init``.

    Args:
        shrink: weight multiplier.
        perturb: scale of the fresh-initialisation noise.
        every_n_frames: period.
        networks: which networks (``None``: all the module's ``networks()``).

    Examples:
        >>> from torchrl_sparse.lightning import ShrinkAndPerturbCallback
        >>> ShrinkAndPerturbCallback().shrink
        0.8
    """

    def __init__(
        self,
        shrink: float = 0.8,
        perturb: float = 0.2,
        every_n_frames: int = 100_000,
        networks: list[str] | None = None,
    ) -> None:
        super().__init__(networks, every_n_frames)
        self.shrink = shrink
        self.perturb = perturb

    def build(self, module: nn.Module, optimizer: Any, masks: Any) -> ShrinkAndPerturb:
        return ShrinkAndPerturb(
            module,
            optimizer,
            shrink=self.shrink,
            perturb=self.perturb,
            every=self.every_n_frames,
            masks=masks,
        )
