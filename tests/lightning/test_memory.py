"""Memory stays bounded in long trainings: what a batch or a metric creates does not outlive it.

RSS curves are for ``benchmarks/bench_soak_memory.py``; these tests check the causes exactly
(the autograd graph the Fisher trace records is freed, live tensors do not pile up over batches).
"""

import gc
import weakref

import lightning.pytorch as pl
import pytest
import torch
from tensordict import TensorDict
from torch import nn

from torchrl_sparse.lightning import MultiTaskPPO, PlasticityMonitorCallback, SparsityCallback
from torchrl_sparse.modules import make_ppo_actor
from torchrl_sparse.plasticity import fisher_trace
from torchrl_sparse.sparse import GMP, CubicSchedule


def _live_tensors() -> int:
    gc.collect()
    return sum(isinstance(o, torch.Tensor) for o in gc.get_objects())


@pytest.mark.parametrize("arch", ["mtppo", "moore"])
def test_fisher_trace_frees_the_graph_it_records(arch: str) -> None:
    """Every layer output of the trace's forward (and so its graph) is gone once it returns.

    The ghost method keeps each layer's output to take its gradient; kept alive past the call,
    a batch of 1,024 states left 30 MB (MTPPO) to 60 MB (MOORE) behind per trace.
    """
    actor = make_ppo_actor("MT3", arch)
    outputs: list[weakref.ref] = []
    handles = [
        module.register_forward_hook(lambda m, args, out: outputs.append(weakref.ref(out)))
        for module in actor.modules()
        if isinstance(module, nn.Linear | nn.Conv2d)
    ]
    g = torch.Generator().manual_seed(0)
    batch = TensorDict(
        {
            "observation": torch.randint(0, 11, (64, 3, 7, 7), generator=g).float(),
            "task_id": torch.randint(0, 3, (64,), generator=g),
        },
        [64],
    )
    try:
        assert fisher_trace(actor, batch) > 0
    finally:
        for handle in handles:
            handle.remove()
    gc.collect()
    alive = sum(ref() is not None for ref in outputs)
    assert outputs
    assert alive == 0, f"{alive} of {len(outputs)} layer outputs outlive the trace"


class _CountTensors(pl.Callback):
    def __init__(self) -> None:
        self.counts: list[int] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        self.counts.append(_live_tensors())


def test_training_with_metrics_and_sparsity_keeps_live_tensors_flat() -> None:
    """The GMP recipe's callbacks at every batch: no tensor piles up from batch to batch."""
    module = MultiTaskPPO(
        "MT3",
        envs_per_task=1,
        total_steps_per_task=6 * 16,
        steps_per_task_per_batch=16,
        policy_epochs=1,
        policy_minibatch_per_task=16,
        eval_every_steps_per_task=0,
    )
    counter = _CountTensors()
    metrics = PlasticityMonitorCallback(
        ["dormant_ratio", "srank", "fisher_trace"], every_n_frames=48, batch_size=48
    )
    sparsity = SparsityCallback(
        {"actor_network.*": 0.9, "critic_network.*": 0.9},
        method=GMP(CubicSchedule(start=0.0, end=0.5, update_every=48)),
    )
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=[sparsity, metrics, counter],
    )  # fmt: skip
    trainer.fit(module)
    assert len(counter.counts) == 6
    # The first batches create optimizer state and the metric reservoir once.
    assert counter.counts[-1] <= counter.counts[2], counter.counts
