"""A plasticity monitor for named modules, and its TorchRL ``Trainer`` hook.

Keys emitted (flat strings; ``<name>`` is the monitored module's name, ``<layer>`` a hidden
layer's readable name, see :mod:`~torchrl_sparse.plasticity.probes`):

=========================================== ===================================================
``plasticity/<name>/dormant_ratio``         pooled dormant ratio of all hidden layers
``plasticity/<name>/dormant_ratio/<layer>`` dormant ratio of one hidden layer
``plasticity/<name>/dormant_ratio/task_<t>`` pooled dormant ratio on task ``t``'s samples
``plasticity/<name>/active_units``          fraction of units non-zero on some sample
``plasticity/<name>/srank``                 srank (Kumar et al.) of the features
``plasticity/<name>/entropy_rank``          entropy effective rank of the features
``plasticity/<name>/stable_rank``           stable rank of the features
``plasticity/<name>/feature_norm``          mean L2 norm of the features
``plasticity/<name>/weight_norm``           global L2 norm of the parameters
``plasticity/<name>/weight_drift``          ``||theta - theta_0||`` since construction
``plasticity/<name>/grad_norm``             global L2 norm of the current gradients
``plasticity/<name>/fisher_trace``          Fisher trace (policies only)
=========================================== ===================================================

**Measure the networks being trained.** A TorchRL loss may train copies of the networks it
was given: ``SACLoss`` stacks its twin Q-networks into ``loss.qvalue_network_params`` and
trains those, so the Q-network module passed to it keeps its initial weights forever. Pass
``trained_by=`` (the optimizer, or the loss) and the monitor refuses any module that holds
none of the trained parameters, naming the fix: for a stacked network,
:class:`~torchrl_sparse.objectives.StackedNetworkView` of the loss's live copy.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from tensordict import NestedKey, TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.objectives import LossModule
from torchrl.trainers import Trainer, TrainerHookBase

from torchrl_sparse.plasticity import metrics as M
from torchrl_sparse.plasticity.fisher import fisher_trace
from torchrl_sparse.plasticity.interventions import _Scheduled
from torchrl_sparse.plasticity.masks import MaskSource, resolve_masks
from torchrl_sparse.plasticity.probes import ActivationProbe, run_module
from torchrl_sparse.plasticity.reservoir import ObservationReservoir

__all__ = ["ALL_METRICS", "PlasticityMonitor", "PlasticityTrainerHook", "TrainedBy"]

#: What trains the monitored modules: optimizers, or modules holding the trained parameters
#: (a TorchRL loss), alone or in a sequence.
TrainedBy = torch.optim.Optimizer | nn.Module | Sequence[torch.optim.Optimizer | nn.Module]

#: Every metric the monitor knows, in the order they are computed.
ALL_METRICS: tuple[str, ...] = (
    "dormant_ratio",
    "active_units",
    "srank",
    "entropy_rank",
    "stable_rank",
    "feature_norm",
    "weight_norm",
    "weight_drift",
    "grad_norm",
    "fisher_trace",
)
_FEATURE_METRICS = {"srank", "entropy_rank", "stable_rank", "feature_norm"}
_ACTIVATION_METRICS = {"dormant_ratio", "active_units"} | _FEATURE_METRICS


class PlasticityMonitor:
    """Compute a chosen set of plasticity metrics for named modules on a cadence.

    Metrics never change the training run: every random draw they make (subsampling the
    batch, sampling the reservoir, the Fisher trace's actions, the actions a
    :class:`~torchrl_sparse.objectives.StackedNetworkView` samples) comes from the monitor's
    own generator, seeded by ``seed`` and saved in :meth:`state_dict`; the global torch
    generators are left exactly as they were.

    Args:
        modules: ``{name: module}``, e.g. ``{"actor": actor, "critic": critic}``; plain modules
            and TensorDict modules both work.
        metrics: subset of :data:`ALL_METRICS`.
        tau: dormancy threshold, ``>= 0``.
        delta: srank threshold in ``(0, 1)``.
        every: compute every this many steps counted by :meth:`step` (the papers: 10,000
            environment steps).
        batch_size: size of the metric batch (the papers: 1,024).
        features: ``{name: qualified submodule name}`` whose output is the representation for
            the rank and feature-norm metrics (e.g. the shared trunk); default: the last hidden
            layer that sees every sample of the batch (the shared representation of a
            multi-head network, not a task head).
        policies: names whose module is a policy for ``fisher_trace``; default: those with a
            ``get_dist`` method (TorchRL ``ProbabilisticActor``).
        masks: ``{name: masks or MaskProvider}``; units without incoming connections are not
            counted and pruned weights are left out of the Fisher trace.
        task_key: key of the task id (ids or one-hot) in TensorDict batches for per-task
            dormant ratios.
        reservoir: when given, metric batches are sampled from it instead of the passed batch.
        input_key: key fed to plain (non-TensorDict) modules when the batch is a TensorDict.
        fisher_chunk_size: per-sample gradients are computed this many samples at a time
            (bounds memory: each sample holds a full copy of the actor's gradient).
        seed: seed of the monitor's generator.
        on_error: ``"raise"``, or ``"warn"``: a metric that cannot be computed is returned as
            NaN (missing) and a warning names it and the error, once per metric.
        trained_by: the optimizer(s) that train the modules, or the module(s) holding their
            trained parameters (e.g. the TorchRL loss). Every monitored module must then hold
            at least one of those parameters (the same tensor, or a view of its storage as a
            :class:`~torchrl_sparse.objectives.StackedNetworkView` holds); checked here, when
            the monitor is built.

    Raises:
        ValueError: on an unknown metric, a bad ``tau``/``delta``/``every``/``on_error``, an
            unknown module name in ``features``/``policies``/``masks``, a module without
            hidden layers when an activation metric is requested, or a module that holds none
            of the parameters of ``trained_by`` (a stale copy, e.g. the Q-network given to a
            TorchRL ``SACLoss``; the message names the live copy to monitor instead).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> mon = PlasticityMonitor({"actor": net}, ["dormant_ratio", "srank"], every=100)
        >>> out = mon.compute(torch.randn(64, 4))
        >>> for key in sorted(out.keys()):
        ...     print(key)
        plasticity/actor/dormant_ratio
        plasticity/actor/dormant_ratio/0
        plasticity/actor/srank
        >>> mon.step(50, torch.randn(64, 4)) is None  # not due yet
        True

        With ``trained_by``, a module the optimizer does not train is refused:

        >>> optimizer = torch.optim.Adam(net.parameters())
        >>> copy = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> PlasticityMonitor({"actor": copy}, ["srank"], trained_by=optimizer)
        Traceback (most recent call last):
            ...
        ValueError: 'actor' holds none of the parameters that trained_by trains: ...
        >>> PlasticityMonitor({"actor": net}, ["srank"], trained_by=optimizer).metrics
        ('srank',)

        Sampling actions for the Fisher trace leaves the global generator untouched:

        >>> x = torch.randn(64, 4)
        >>> state = torch.get_rng_state()
        >>> _ = PlasticityMonitor({"actor": net}, ["fisher_trace"]).compute(x)
        >>> torch.equal(torch.get_rng_state(), state)
        True
    """

    def __init__(
        self,
        modules: Mapping[str, nn.Module],
        metrics: Sequence[str] = ALL_METRICS,
        *,
        tau: float = 0.1,
        delta: float = 0.01,
        every: int = 10_000,
        batch_size: int = 1_024,
        features: Mapping[str, str] | None = None,
        policies: Sequence[str] | None = None,
        masks: Mapping[str, MaskSource] | None = None,
        task_key: NestedKey | None = None,
        reservoir: ObservationReservoir | None = None,
        input_key: NestedKey = "observation",
        fisher_chunk_size: int | None = 256,
        seed: int = 0,
        on_error: Literal["raise", "warn"] = "raise",
        trained_by: TrainedBy | None = None,
    ) -> None:
        if not modules:
            raise ValueError("modules must name at least one module to monitor, got {}")
        unknown = [m for m in metrics if m not in ALL_METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; allowed are {list(ALL_METRICS)}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got batch_size={batch_size}")
        if on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', got on_error={on_error!r}")
        self.modules = dict(modules)
        self.metrics = tuple(m for m in ALL_METRICS if m in metrics)
        self.tau = M.check_tau(tau)
        self.delta = M.check_delta(delta)
        self.batch_size = int(batch_size)
        self.features = dict(features or {})
        self.policies = (
            list(policies)
            if policies is not None
            else [n for n, m in self.modules.items() if hasattr(m, "get_dist")]
        )
        self.masks = dict(masks or {})
        for what, names in (
            ("features", self.features),
            ("policies", self.policies),
            ("masks", self.masks),
        ):
            bad = [n for n in names if n not in self.modules]
            if bad:
                raise ValueError(f"{what} names unknown modules {bad}; allowed: {list(modules)}")
        for name, sub in self.features.items():
            self.modules[name].get_submodule(sub)
        if trained_by is not None:
            _refuse_untrained(self.modules, trained_by)
        self.task_key = task_key
        self.reservoir = reservoir
        self.input_key = input_key
        self.fisher_chunk_size = fisher_chunk_size
        self.on_error = on_error
        self.generator = torch.Generator().manual_seed(seed)
        self._warned: set[str] = set()
        self._fingerprints: dict[str, list[tuple[float, ...]]] = {}
        self._schedule = _Scheduled(every, None)
        self._probes: dict[str, ActivationProbe] = {}
        if _ACTIVATION_METRICS & set(self.metrics):
            self._probes = {n: ActivationProbe(m) for n, m in self.modules.items()}
        self.initial: dict[str, dict[str, torch.Tensor]] = {
            n: {k: p.detach().clone() for k, p in m.named_parameters()}
            for n, m in self.modules.items()
        }

    @property
    def every(self) -> int:
        """Cadence in steps."""
        return self._schedule.every

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run the block on global generators seeded from the monitor's, then restore them."""
        cuda = sorted(
            {
                p.device.index or 0
                for m in self.modules.values()
                for p in m.parameters()
                if p.device.type == "cuda"
            }
        )
        seed = int(torch.randint(2**62, (), generator=self.generator))
        with torch.random.fork_rng(devices=cuda):
            torch.default_generator.manual_seed(seed)
            for index in cuda:
                torch.cuda.default_generators[index].manual_seed(seed)
            yield

    def _metric_batch(self, batch: Any) -> Any:
        if self.reservoir is not None:
            return self.reservoir.sample(self.batch_size)
        if batch is None:
            raise ValueError("the monitor has no reservoir, so compute/step need a batch")
        if isinstance(batch, TensorDictBase):
            batch = batch.reshape(-1) if batch.batch_dims != 1 else batch
            n = batch.batch_size[0] if batch.batch_dims else 0
        else:
            n = batch.shape[0] if batch.ndim else 0
        if n == 0:
            raise ValueError("the metric batch is empty: need a batch of >= 1 sample")
        if n > self.batch_size:
            batch = batch[torch.randperm(n)[: self.batch_size]]
        return batch

    def _input_for(self, module: nn.Module, batch: Any) -> Any:
        if isinstance(batch, TensorDictBase) and not isinstance(module, TensorDictModuleBase):
            return batch.get(self.input_key)
        return batch

    def compute(self, batch: Any | Callable[[], Any] = None) -> TensorDict:
        """Compute every selected metric now.

        Args:
            batch: the states to evaluate on, or a zero-argument callable returning them
                (ignored when a reservoir is set; subsampled to ``batch_size``).

        Returns:
            A TensorDict of 0-dim float tensors with the keys listed in :mod:`.monitor`.
        """
        out: dict[str, float] = {}
        with self._own_rng():
            batch = self._metric_batch(batch() if callable(batch) else batch)
            for name, module in self.modules.items():
                self._warn_if_frozen(name, module)
                out.update(self._compute_one(name, module, batch))
        return TensorDict({k: torch.tensor(float(v)) for k, v in out.items()}, [])

    def _warn_if_frozen(self, name: str, module: nn.Module) -> None:
        """Warn once when a module's weights were identical at its last three measurements.

        A network being trained changes between measurements; one that does not is most likely
        a copy nobody trains (TorchRL losses train functional copies of the networks given to
        them), whose metrics would be silently stale. ``trained_by`` makes this an error.
        """
        with torch.no_grad():
            fingerprint = tuple(
                value
                for p in module.parameters()
                for value in (float(p.double().sum()), float(p.double().square().sum()))
            )
        history = self._fingerprints.setdefault(name, [])
        history[:] = [*history[-2:], fingerprint]
        frozen = len(history) == 3 and len(set(history)) == 1
        if frozen and f"frozen:{name}" not in self._warned:
            self._warned.add(f"frozen:{name}")
            warnings.warn(
                f"The weights of {name!r} have not changed over the last 3 measurements. If "
                "training ran in between, this is not the network being trained: TorchRL "
                "losses train copies of the networks given to them (for SACLoss monitor "
                "StackedNetworkView(loss, 'qvalue_network', 0, action_source=actor)); pass "
                "trained_by=<optimizer or loss> to have such modules refused.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _guarded(self, out: dict[str, float], keys: list[str], fn: Callable[[], Any]) -> None:
        """``out.update`` with ``fn()`` (a float for ``keys[0]``, or a dict of entries).

        With ``on_error="warn"`` a failure sets every key in ``keys`` to NaN and warns once.
        """
        if self.on_error == "raise":
            value = fn()
        else:
            try:
                value = fn()
            except Exception as error:  # a metric must never stop training
                if keys[0] not in self._warned:
                    self._warned.add(keys[0])
                    warnings.warn(
                        f"{', '.join(keys)} could not be computed ({type(error).__name__}: "
                        f"{error}); logged as NaN (missing) whenever this fails, without "
                        "further warnings.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                value = dict.fromkeys(keys, math.nan)
        out.update(value if isinstance(value, dict) else {keys[0]: value})

    def _compute_one(self, name: str, module: nn.Module, batch: Any) -> dict[str, float]:
        pre = f"plasticity/{name}"
        out: dict[str, float] = {}
        masks = resolve_masks(self.masks.get(name), module)
        x = self._input_for(module, batch)
        if name in self._probes:
            self._guarded(
                out,
                [f"{pre}/{m}" for m in self.metrics if m in _ACTIVATION_METRICS],
                lambda: self._activation_metrics(pre, name, module, masks, batch, x),
            )
        if "weight_norm" in self.metrics:
            self._guarded(out, [f"{pre}/weight_norm"], lambda: M.weight_norm(module))
        if "weight_drift" in self.metrics:
            self._guarded(
                out, [f"{pre}/weight_drift"], lambda: M.weight_drift(module, self.initial[name])
            )
        if "grad_norm" in self.metrics:
            self._guarded(out, [f"{pre}/grad_norm"], lambda: M.grad_norm(module))
        if "fisher_trace" in self.metrics and name in self.policies:
            self._guarded(
                out,
                [f"{pre}/fisher_trace"],
                lambda: fisher_trace(module, x, masks=masks, chunk_size=self.fisher_chunk_size),
            )
        return out

    def _activation_metrics(
        self,
        pre: str,
        name: str,
        module: nn.Module,
        masks: dict[str, torch.Tensor],
        batch: Any,
        x: Any,
    ) -> dict[str, float]:
        probe = self._probes[name]
        feats: list[torch.Tensor] = []
        handle = None
        if name in self.features:
            sub = module.get_submodule(self.features[name])
            handle = sub.register_forward_hook(lambda _m, _i, o: feats.append(o.detach()))
        try:
            with probe, torch.no_grad():
                run_module(module, x)
        finally:
            if handle is not None:
                handle.remove()
        features = feats[-1] if feats else self._default_features(module, probe, x)
        out: dict[str, float] = {}
        if "dormant_ratio" in self.metrics:
            task = None
            if self.task_key is not None and isinstance(batch, TensorDictBase):
                task = batch.get(self.task_key, None)
            stats = M.dormant_ratio(module, None, self.tau, masks=masks, task_ids=task, probe=probe)
            out[f"{pre}/dormant_ratio"] = stats.overall
            out.update({f"{pre}/dormant_ratio/{k}": v for k, v in stats.per_layer.items()})
            out.update({f"{pre}/dormant_ratio/task_{t}": v for t, v in stats.per_task.items()})
        if "active_units" in self.metrics:
            out[f"{pre}/active_units"] = M.active_unit_fraction(module, probe, masks)
        ranks = {"srank", "entropy_rank", "stable_rank"} & set(self.metrics)
        # one SVD serves all three ranks
        sv = M.singular_values(features) if ranks else None
        if "srank" in self.metrics:
            out[f"{pre}/srank"] = M.srank(sv, self.delta, singular_values=True)
        if "entropy_rank" in self.metrics:
            out[f"{pre}/entropy_rank"] = M.entropy_effective_rank(sv, singular_values=True)
        if "stable_rank" in self.metrics:
            out[f"{pre}/stable_rank"] = M.stable_rank(sv, singular_values=True)
        if "feature_norm" in self.metrics:
            out[f"{pre}/feature_norm"] = M.feature_norm(features)
        return out

    @staticmethod
    def _default_features(module: nn.Module, probe: ActivationProbe, x: Any) -> torch.Tensor:
        """The last probed activation with one row per sample of the batch."""
        n = x.batch_size[0] if isinstance(x, TensorDictBase) else x.shape[0]
        recorded = list(probe)
        for layer, act in reversed(recorded):
            view = layer.unit_view(module, act)
            if view.reshape(-1, view.shape[-2] * view.shape[-1]).shape[0] == n:
                return act.reshape(n, -1)
        return recorded[-1][1]

    def step(self, frames: int = 1, batch: Any | Callable[[], Any] = None) -> TensorDict | None:
        """Advance the step counter by ``frames``; compute the metrics when due.

        Args:
            frames: steps since the last call (environment frames, or 1 per update).
            batch: the batch, or a zero-argument callable returning it (called only when due).

        Returns:
            The metrics when due, else ``None``.
        """
        if not self._schedule._due(frames):
            return None
        self._schedule.count += 1
        return self.compute(batch)

    def state_dict(self) -> dict[str, Any]:
        """Cadence counters, the generator and the initial-weight snapshots used for drift."""
        return {
            "schedule": self._schedule.state_dict(),
            "generator": self.generator.get_state(),
            "initial": self.initial,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self._schedule.load_state_dict(state_dict["schedule"])
        if "generator" in state_dict:
            self.generator.set_state(state_dict["generator"])
        self.initial = {
            n: {k: v.clone() for k, v in params.items()}
            for n, params in state_dict["initial"].items()
        }


def _storage(tensor: torch.Tensor) -> tuple[torch.device, int]:
    return tensor.device, tensor.untyped_storage().data_ptr()


def _refuse_untrained(modules: Mapping[str, nn.Module], trained_by: TrainedBy) -> None:
    """Raise a ``ValueError`` for the first module holding none of the trained parameters."""
    single = isinstance(trained_by, torch.optim.Optimizer | nn.Module)
    sources = [trained_by] if single else list(trained_by)
    trained: set[tuple[torch.device, int]] = set()
    for source in sources:
        if isinstance(source, torch.optim.Optimizer):
            trained |= {_storage(p) for group in source.param_groups for p in group["params"]}
        elif isinstance(source, nn.Module):
            trained |= {_storage(p) for p in source.parameters()}
        else:
            raise TypeError(
                "trained_by must be optimizers or modules (a TorchRL loss), got "
                f"{type(source).__name__}."
            )
    for name, module in modules.items():
        held = {_storage(p) for p in module.parameters()}
        if held and not held & trained:
            raise ValueError(
                f"{name!r} holds none of the parameters that trained_by trains: its metrics would "
                "describe weights that never change. "
                + _live_copy_hint(module, [s for s in sources if isinstance(s, LossModule)])
            )


def _live_copy_hint(module: nn.Module, losses: list[LossModule]) -> str:
    """How to monitor the copy of ``module`` that a TorchRL loss trains."""
    names = {name for name, _ in module.named_parameters()}
    for loss in losses:
        for attr, _ in loss.named_children():
            network = attr.removesuffix("_params")
            copy = getattr(loss, network, None)
            if network == attr or attr.startswith("target_") or not isinstance(copy, nn.Module):
                continue
            if {name for name, _ in copy.named_parameters()} == names:
                return (
                    f"{type(loss).__name__} trains a copy of it, loss.{attr}: monitor "
                    f"StackedNetworkView(loss, {network!r}, 0, action_source=actor) "
                    "(torchrl_sparse.objectives) instead, a live view of copy 0."
                )
    return (
        "TorchRL losses may train copies of the networks they are given (SACLoss stacks its "
        "Q-networks into loss.qvalue_network_params): monitor StackedNetworkView(loss, "
        "'qvalue_network', 0, action_source=actor) (torchrl_sparse.objectives) for such a "
        "network, or the module that the optimizer steps."
    )


class PlasticityTrainerHook(TrainerHookBase):
    """Run a :class:`PlasticityMonitor` from a TorchRL ``Trainer`` and log its output.

    Registered as a ``"pre_steps_log"`` op: after each collection it advances the monitor by the
    number of frames collected and, when due, returns the metrics as floats for the trainer's
    logger. The collected batch is the metric batch unless the monitor has a reservoir.

    Args:
        monitor: the monitor to run.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> hook = PlasticityTrainerHook(PlasticityMonitor({"actor": net}, ["srank"], every=10))
        >>> out = hook(TensorDict({"observation": torch.randn(16, 4)}, [16]))
        >>> list(out)
        ['plasticity/actor/srank']

        With a trainer: ``hook.register(trainer)``.
    """

    def __init__(self, monitor: PlasticityMonitor) -> None:
        self.monitor = monitor

    def __call__(self, batch: TensorDictBase) -> dict[str, float] | None:
        """Advance by ``batch.numel()`` frames; return the metrics when due."""
        out = self.monitor.step(batch.numel(), batch)
        return None if out is None else {k: float(v) for k, v in out.items()}

    def register(self, trainer: Trainer, name: str = "plasticity_monitor") -> None:
        """Register the hook on ``trainer`` (checkpointed under ``name``)."""
        trainer.register_module(name, self)
        trainer.register_op("pre_steps_log", self)

    def state_dict(self) -> dict[str, Any]:
        """The monitor's state."""
        return self.monitor.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the monitor's state."""
        self.monitor.load_state_dict(state_dict)
