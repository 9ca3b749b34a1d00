"""Every rank holds identical masks, even when their generators disagree."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torchrl_sparse.sparse import SET, ConstantSchedule, Sparsifier

from .conftest import make_cnn_mlp, train_steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = make_cnn_mlp(seed=rank)  # different weights and seeds on purpose
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        sparsifier = Sparsifier(
            model,
            {"*": 0.8},
            method=SET(schedule=ConstantSchedule(update_every=2)),
            optimizer=optimizer,
            seed=rank,
        )
        initial = [m.clone() for m in sparsifier.masks]
        train_steps(model, optimizer, sparsifier, 4, seed=rank)
        torch.save(initial + [m.clone() for m in sparsifier.masks], f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_masks_identical_across_ranks(tmp_path) -> None:
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(a, b) for a, b in zip(rank0, rank1, strict=True))
