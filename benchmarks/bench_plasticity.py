"""Benchmark of the plasticity toolkit on the MT3 MOORE actor (not a timed test).

Measures, on CPU:

1. the full metric suite of :class:`~torchrl_sparse.plasticity.PlasticityMonitor` on a batch of
   1,024 states for the MT3 MOORE actor (and critic);
2. the Fisher trace with the default ghost-norm method (per-sample gradient norms from one
   batched backward) against ``torch.func`` (vmap over grad) and a per-sample Python loop;
   On a near-deterministic copy of the actor (head outputs scaled by 1,000, as after long
   training: ``pi(a|s) = 1`` in float32 for most states) the ghost method identifies the head
   rows' samples exactly and matches vmap;
3. the monitor's overhead at the papers' cadence (every 10,000 environment steps) relative to
   the training time of those 10,000 steps with :class:`~torchrl_sparse.lightning.MultiTaskPPO`
   (MT3, MOORE, the papers' PPO settings, evaluation off).

The machine may be shared: methods are timed interleaved in one process (median of the
rounds) and the load average is printed; the speed-up ratios are the robust numbers.

Run: ``python benchmarks/bench_plasticity.py [--repeats 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

import torch
from bench_ppo_throughput import training_fps  # this folder is on sys.path when run as a script
from tensordict import TensorDict

from torchrl_sparse.lightning.ppo import DEFAULT_ENVS_PER_TASK
from torchrl_sparse.modules import make_ppo_actor, make_ppo_critic
from torchrl_sparse.plasticity import ObservationReservoir, PlasticityMonitor, fisher_trace

BATCH = 1_024
CADENCE = 10_000


def _timeit(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _timeit_interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call, the functions taking turns so that load affects all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _states(n: int) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    return TensorDict(
        {
            "observation": torch.randint(0, 11, (n, 3, 7, 7), generator=g).float(),
            "task_id": torch.randint(0, 3, (n,), generator=g),
        },
        [n],
    )


def _train_time_per_cadence(batches: int = 6) -> float:
    """Seconds of MultiTaskPPO training (MT3, MOORE, the papers' settings) per CADENCE frames.

    The real LightningModule with evaluation off, timed by ``bench_ppo_throughput``: collection
    plus 8 epochs of updates per 2,000 frames, the median over batches after warm-up.
    """
    _, fps = training_fps("moore", False, batches, DEFAULT_ENVS_PER_TASK)
    return CADENCE / fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    actor = make_ppo_actor("MT3", arch="moore")
    critic = make_ppo_critic("MT3", arch="moore")
    batch = _states(BATCH)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, {_load()}")
    print("actor: torchrl_sparse.modules.make_ppo_actor('MT3', arch='moore')")

    actor_only = PlasticityMonitor(
        {"actor": actor},
        features={"actor": "module.0.module.encoder"},
        task_key="task_id",
        batch_size=BATCH,
    )
    no_fisher = PlasticityMonitor(
        {"actor": actor},
        [m for m in actor_only.metrics if m != "fisher_trace"],
        features={"actor": "module.0.module.encoder"},
        task_key="task_id",
    )
    t_act = _timeit_interleaved(
        {"suite": lambda: actor_only.compute(batch), "no_fisher": lambda: no_fisher.compute(batch)},
        args.repeats,
    )
    t_suite, t_nofisher = t_act["suite"], t_act["no_fisher"]
    out = actor_only.compute(batch)
    print(f"\n[1] full metric suite, actor, batch {BATCH}: {t_suite * 1e3:.1f} ms")
    for key in ("dormant_ratio", "srank", "entropy_rank", "stable_rank", "fisher_trace"):
        print(f"    plasticity/actor/{key} = {float(out[f'plasticity/actor/{key}']):.4f}")
    print(f"    of which everything but the Fisher trace: {t_nofisher * 1e3:.1f} ms")

    t = _timeit_interleaved(
        {
            "ghost": lambda: fisher_trace(actor, batch),
            "vmap": lambda: fisher_trace(actor, batch, method="vmap", chunk_size=256),
        },
        args.repeats,
    )
    t_loop = _timeit(lambda: fisher_trace(actor, batch, method="loop"), 1)
    values = {}
    for method in ("ghost", "vmap", "loop"):
        torch.manual_seed(1)
        values[method] = fisher_trace(actor, batch, method=method)
    print(f"\n[2] Fisher trace, batch {BATCH} ({_load()}):")
    print(f"    ghost (default) {t['ghost']:.3f} s, vmap {t['vmap']:.3f} s, loop {t_loop:.3f} s")
    print(
        f"    speed-up ghost vs loop {t_loop / t['ghost']:.1f}x (target >= 10x), "
        f"vs vmap {t['vmap'] / t['ghost']:.1f}x; vmap vs loop {t_loop / t['vmap']:.1f}x"
    )
    print("    values " + ", ".join(f"{m} {v:.6f}" for m, v in values.items()))
    saturated = copy.deepcopy(actor)
    with torch.no_grad():
        for head in saturated.module[0].module.head.heads:
            head[2].weight.mul_(1_000.0)
            head[2].bias.mul_(1_000.0)
        share = float((saturated.get_dist(batch.copy()).probs.max(-1).values == 1).float().mean())
    t_sat = _timeit(lambda: fisher_trace(saturated, batch), args.repeats)
    saturated_values = {}
    for method in ("ghost", "vmap"):
        torch.manual_seed(1)
        saturated_values[method] = fisher_trace(saturated, batch, method=method, chunk_size=256)
    print(f"    near-deterministic actor ({100 * share:.0f}% of states at pi(a|s) = 1 in float32):")
    print(
        f"    ghost {t_sat:.3f} s, values "
        + ", ".join(f"{m} {v:.2f}" for m, v in saturated_values.items())
    )

    monitor = PlasticityMonitor(
        {"actor": actor, "critic": critic},
        features={"actor": "module.0.module.encoder", "critic": "module.encoder"},
        task_key="task_id",
        every=CADENCE,
        reservoir=ObservationReservoir(["observation", "task_id"]),
        batch_size=BATCH,
    )
    monitor.reservoir.record(_states(4 * BATCH))
    cheap = PlasticityMonitor(
        {"actor": actor, "critic": critic},
        [m for m in monitor.metrics if m != "fisher_trace"],
        features={"actor": "module.0.module.encoder", "critic": "module.encoder"},
        task_key="task_id",
        reservoir=monitor.reservoir,
    )
    t_mon = _timeit_interleaved({"all": monitor.compute, "cheap": cheap.compute}, args.repeats)
    t_monitor, t_cheap = t_mon["all"], t_mon["cheap"]
    t_train = _train_time_per_cadence()
    print(f"\n[3] monitor (actor + critic, reservoir sample, all metrics) ({_load()}):")
    print(f"    {t_monitor:.3f} s")
    print(f"    without the Fisher trace: {t_cheap:.3f} s")
    print(f"    MultiTaskPPO training (MT3, MOORE) per {CADENCE} env steps: ")
    print(f"    {t_train:.1f} s -> overhead {100 * t_monitor / t_train:.2f}% (target <= 2%),")
    print(f"    {100 * t_cheap / t_train:.2f}% without the Fisher trace ({_load()})")


if __name__ == "__main__":
    main()
