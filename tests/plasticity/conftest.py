import torch
from tensordict import TensorDict


def mt3_states(n: int = 48) -> TensorDict:
    """``n`` random MiniGrid MT3 states (symbolic grids and task ids), seeded."""
    g = torch.Generator().manual_seed(0)
    return TensorDict(
        {
            "observation": torch.randint(0, 11, (n, 3, 7, 7), generator=g).float(),
            "task_id": torch.arange(n) % 3,
        },
        [n],
    )
