"""Parameter counting and parameter-matched width search (McLean et al. 2025)."""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters", "match_width", "multihead_mlp_param_count"]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a module.

    Args:
        module: the module.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The parameter count.

    Examples:
        >>> count_parameters(nn.Linear(10, 5))
        55
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def multihead_mlp_param_count(
    width: int,
    in_dim: int,
    out_dim: int,
    num_tasks: int,
    num_layers: int = 3,
    layer_norm: bool = False,
) -> int:
    """Parameters of a plain multi-head MLP: ``num_layers`` hidden layers, one linear head per task.

    This is the network built by :func:`~torchrl_sparse.modules.make_sac_actor` /
    :func:`~torchrl_sparse.modules.make_sac_qvalue` with ``arch="mtsac"`` (``in_dim`` includes
    the task one-hot, and the action for a Q-network).

    Args:
        width: hidden width.
        in_dim: input width.
        out_dim: output width of each head.
        num_tasks: number of heads.
        num_layers: number of hidden layers.
        layer_norm: a ``LayerNorm`` (``2 * width`` parameters) after each hidden layer.

    Returns:
        The parameter count.

    Examples:
        >>> multihead_mlp_param_count(400, in_dim=49, out_dim=8, num_tasks=10)
        372880
    """
    hidden = (in_dim + 1) * width + (num_layers - 1) * (width + 1) * width
    norms = 2 * width * num_layers if layer_norm else 0
    return hidden + norms + num_tasks * (width + 1) * out_dim


def match_width(
    target_params: int,
    in_dim: int,
    out_dim: int,
    num_tasks: int,
    num_layers: int = 3,
    layer_norm: bool = False,
    multiple_of: int = 1,
    max_width: int = 65536,
    rtol: float = 0.05,
) -> int:
    """Hidden width of a plain multi-head MLP whose parameter count is closest to a target.

    Used to scale the simple multi-head SAC baseline to the size of a larger architecture
    (McLean et al. 2025). Actor and critic are matched separately (call once per network), so the
    critic can be scaled alone. The parameter count grows with the width, so the closest width
    among the multiples of ``multiple_of`` is found by bisection.

    For the MOORE MT10 actor (1,379,320 parameters: 4 experts of 3x400, ``in_dim=39+10``,
    ``out_dim=8``) the exact match is 798; McLean et al. report the rounded 800, which
    ``multiple_of=50`` (or 16, 32) gives.

    Args:
        target_params: parameter count to match.
        in_dim: input width of the MLP.
        out_dim: output width of each head.
        num_tasks: number of heads.
        num_layers: number of hidden layers.
        layer_norm: count a ``LayerNorm`` after each hidden layer.
        multiple_of: only consider widths that are multiples of this.
        max_width: largest width considered.
        rtol: largest allowed relative difference between the matched count and the target.

    Returns:
        The matched width.

    Raises:
        ValueError: if an argument is out of range, or no width in
            ``[multiple_of, max_width]`` comes within ``rtol`` of the target (the message gives
            the achievable range).

    Examples:
        >>> match_width(1_379_320, in_dim=49, out_dim=8, num_tasks=10)
        798
        >>> match_width(1_379_320, in_dim=49, out_dim=8, num_tasks=10, multiple_of=50)
        800
    """
    for name, value in {
        "in_dim": in_dim,
        "out_dim": out_dim,
        "num_tasks": num_tasks,
        "num_layers": num_layers,
        "multiple_of": multiple_of,
    }.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    if max_width < multiple_of:
        raise ValueError(f"max_width ({max_width}) must be >= multiple_of ({multiple_of}).")

    def count(units: int) -> int:
        return multihead_mlp_param_count(
            units * multiple_of, in_dim, out_dim, num_tasks, num_layers, layer_norm
        )

    lo, hi = 1, max_width // multiple_of
    smallest, largest = count(lo), count(hi)
    # Bisection for the first width whose count reaches the target; then pick the closer
    # of it and its predecessor.
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) < target_params:
            lo = mid + 1
        else:
            hi = mid
    best = min({max(lo - 1, 1), lo}, key=lambda u: (abs(count(u) - target_params), u))
    if abs(count(best) - target_params) > rtol * target_params:
        raise ValueError(
            f"no width (multiple of {multiple_of}, at most {max_width}) matches "
            f"target_params={target_params} within rtol={rtol}; achievable counts range from "
            f"{smallest} to {largest} for in_dim={in_dim}, out_dim={out_dim}, "
            f"num_tasks={num_tasks}, num_layers={num_layers}."
        )
    return best * multiple_of
