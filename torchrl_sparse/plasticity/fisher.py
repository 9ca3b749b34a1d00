"""Trace of the policy's Fisher information, ``E_{s, a~pi} ||grad_theta log pi(a|s)||^2``.

Actions are sampled from the policy itself (not taken from the batch). Three exact methods:

* ``"ghost"`` (default): per-sample squared gradient norms without per-sample gradients. One
  forward and one backward of ``sum_i log pi(a_i|s_i)`` on the whole batch, with hooks that keep
  each layer's input ``x`` and output, whose gradient ``g`` the backward returns. Samples do not
  interact, so sample ``i``'s gradient of an ``nn.Linear`` is ``sum_p g_ip x_ip^T`` over its
  positions ``p`` and
  ``||dW_i||^2 = sum_pq (g_ip . g_iq)(x_ip . x_iq)`` (``||g_i||^2 ||x_i||^2`` for one position).
  ``nn.Conv2d`` is a ``Linear`` on the unfolded input patches; ``nn.LayerNorm`` gives
  ``sum_p x_hat_ip * g_ip`` and ``sum_p g_ip``, materialised as they are small. Masks (pruned
  entries left out) enter as ``||m * g_i x_i^T||^2 = (g_i^2)^T m^2 (x_i^2)`` for one position;
  with several, the layer's per-sample gradients are materialised. Other parameters (other layer
  types, tied or re-parametrised weights, layers whose input or output is later changed in
  place) fall back to ``"vmap"`` for just those parameters.
* ``"vmap"``: per-sample gradients with ``torch.func`` (``vmap`` over ``grad``), each sample run
  as a batch of one, so convolutions and any batch-shaped module work unchanged.
* ``"loop"``: one backward per sample; the reference, much slower.

``"ghost"`` assumes batch-first layers that do not mix samples (it refuses ``BatchNorm`` using
batch statistics) and parameters used only inside their own module's ``forward``. A layer whose
input rows are not the batch (per-task heads see a subset of the samples; inputs flattened into
the batch give several rows per sample) is resolved by a few more backwards, only as deep as
such layers, of ``sum_i 2^(d_k(i)) log pi(a_i|s_i)`` with ``d_k(i)`` the ``k``-th base-16 digit
of the sample index: a row's output gradient is scaled by its sample's weight, which spells the
sample's index. Scaling by a power of two is exact in floating point, so the digits are read
exactly even where the gradient is mostly cancellation (a near-deterministic policy, whose
``1 - pi(a|s)`` is below float32 resolution). Should a row still not belong to one sample (a
layer that mixes samples), the trace is computed with ``"vmap"`` instead. The actions are drawn
from the distribution of the recorded forward, the same draws as a separate no-grad forward
would give.

Supported policies:

* anything with ``get_dist(tensordict)`` (TorchRL ``ProbabilisticActor`` with a categorical,
  one-hot categorical or ``TanhNormal`` distribution, ...), run on a TensorDict batch;
* a plain module returning logits, run on a tensor batch (categorical policy);
* any module with a custom ``dist_fn(module, batch) -> Distribution``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase, from_module
from torch import nn
from torch.distributions import Categorical, Distribution
from torch.func import grad, vmap

__all__ = ["DistFn", "fisher_trace"]

DistFn = Callable[[nn.Module, Any], Distribution]

_METHODS = ("ghost", "vmap", "loop")
# Exact types: subclasses may use their weights differently (e.g. attention's out_proj).
_GHOST_TYPES = (nn.Linear, nn.Conv2d, nn.LayerNorm)


def _default_dist(module: nn.Module, batch: Any) -> Distribution:
    if hasattr(module, "get_dist"):
        return module.get_dist(batch)
    return Categorical(logits=module(batch))


def _batch_len(batch: Any) -> int:
    if isinstance(batch, TensorDictBase):
        return batch.batch_size[0] if batch.batch_dims else 0
    return batch.shape[0] if batch.ndim else 0


def _key(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))


def _masked(g: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return g if mask is None else g * mask


def fisher_trace(
    policy: nn.Module,
    batch: TensorDictBase | torch.Tensor,
    *,
    dist_fn: DistFn | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    method: Literal["ghost", "vmap", "loop"] = "ghost",
    chunk_size: int | None = None,
) -> float:
    """Fisher information trace of a stochastic policy over its trainable parameters.

    Args:
        policy: the actor (see the module docstring for the supported kinds).
        batch: states, a TensorDict with one batch dimension or a tensor ``(N, ...)``.
        dist_fn: maps ``(policy, batch)`` to a distribution; the default uses
            ``policy.get_dist`` or treats the output as categorical logits.
        masks: resolved sparsity masks; pruned entries are excluded from the trace.
        method: ``"ghost"`` (per-sample gradient norms from layer inputs and output gradients
            of one batched backward), ``"vmap"`` (per-sample gradients with ``torch.func``) or
            ``"loop"`` (one backward per sample); all exact, see the module docstring.
        chunk_size: optional ``vmap`` chunk size to bound memory (``"vmap"``, and the
            parameters ``"ghost"`` hands to ``vmap``).

    Returns:
        The trace averaged over the batch.

    Raises:
        ValueError: on an empty batch or an unknown ``method``; with ``"ghost"``, on a
            ``BatchNorm`` using batch statistics, or when a layer mixes samples and per-sample
            gradients cannot be taken either.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> policy = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
        >>> x = torch.randn(32, 4)
        >>> _ = torch.manual_seed(1)
        >>> fast = fisher_trace(policy, x)
        >>> _ = torch.manual_seed(1)
        >>> abs(fast - fisher_trace(policy, x, method="loop")) < 1e-4 * fast
        True
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got method={method!r}")
    n = _batch_len(batch)
    if n == 0:
        raise ValueError("fisher_trace got an empty batch: need a batch of >= 1 state")
    dist_fn = dist_fn or _default_dist
    masks = masks or {}
    names = [name for name, p in policy.named_parameters() if p.requires_grad]
    if method == "ghost":
        total, actions = _ghost_sq_norm_sum(policy, batch, dist_fn, names, masks, chunk_size)
        if total is not None:
            return float(total) / n
        try:
            return float(
                _vmap_sq_norms(policy, batch, actions, dist_fn, names, masks, chunk_size).mean()
            )
        except Exception as error:
            raise ValueError(
                "fisher_trace: a layer's rows mix samples, and per-sample gradients (vmap) fail "
                f"on this policy ({type(error).__name__}: {error})"
            ) from error
    with torch.no_grad():
        actions = dist_fn(policy, batch).sample()
    if method == "vmap":
        return float(
            _vmap_sq_norms(policy, batch, actions, dist_fn, names, masks, chunk_size).mean()
        )
    total = 0.0
    params = [p for name, p in policy.named_parameters() if p.requires_grad]
    for i in range(n):
        logp = dist_fn(policy, batch[i : i + 1]).log_prob(actions[i : i + 1]).sum()
        grads = torch.autograd.grad(logp, params, allow_unused=True)
        total += sum(
            float(_masked(g, masks.get(name)).pow(2).sum())
            for name, g in zip(names, grads, strict=True)
            if g is not None
        )
    return total / n


def _vmap_sq_norms(
    policy: nn.Module,
    batch: Any,
    actions: torch.Tensor,
    dist_fn: DistFn,
    names: list[str],
    masks: Mapping[str, torch.Tensor],
    chunk_size: int | None,
) -> torch.Tensor:
    """Per-sample ``sum_{name in names} ||mask * grad_name log pi(a_i|s_i)||^2``, shape ``[N]``."""
    params = from_module(policy, as_module=False).detach()
    trainable = TensorDict({_key(name): params.get(_key(name)) for name in names}, [])
    # tied parameters: every module path holding a parameter gets its functional copy
    canonical = {id(p): name for name, p in policy.named_parameters()}
    paths: dict[str, list[tuple[str, ...]]] = {name: [] for name in names}
    for path, p in policy.named_parameters(remove_duplicate=False):
        if canonical[id(p)] in paths:
            paths[canonical[id(p)]].append(_key(path))

    def log_prob(p: TensorDictBase, state: Any, action: torch.Tensor) -> torch.Tensor:
        full = TensorDict({k: p.get(_key(n)) for n, ks in paths.items() for k in ks}, [])
        with full.to_module(policy):
            dist = dist_fn(policy, state.unsqueeze(0))
            return dist.log_prob(action.unsqueeze(0)).sum()

    per_sample = vmap(grad(log_prob), (None, 0, 0), chunk_size=chunk_size)(
        trainable, batch, actions
    )
    return sum(
        _masked(per_sample.get(_key(name)), masks.get(name)).pow(2).flatten(1).sum(1)
        for name in names
    ).detach()


@dataclass
class _Layer:
    """A hooked layer: its trainable parameters and, per call, its input and output gradients."""

    module: nn.Module
    params: dict[str, str]  # local name ("weight"/"bias") -> qualified name
    inputs: list[torch.Tensor] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list)
    versions: list[tuple[int, int]] = field(default_factory=list)

    def changed_in_place(self) -> bool:
        """Whether an input or output was modified in place after the layer ran."""
        return any(
            (x._version, y._version) != v
            for x, y, v in zip(self.inputs, self.outputs, self.versions, strict=True)
        )

    # (stage, call) -> gradient of the call's output; stage k >= 0 is the backward weighted
    # by 2^(k-th base-16 digit of the sample index), stage -1 the unweighted one
    grads: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def rows(self, call: int) -> int:
        """Leading (batch) size of a call's input, 0 for an unbatched call."""
        x, m = self.inputs[call], self.module
        core = {nn.Linear: 1, nn.Conv2d: 3}.get(type(m)) or len(m.normalized_shape)
        return x.shape[0] if x.ndim > core else 0


def _ghost_supported(module: nn.Module, local: list[str]) -> bool:
    if type(module) not in _GHOST_TYPES or not set(local) <= {"weight", "bias"}:
        return False
    if isinstance(module, nn.Conv2d):
        padded = isinstance(module.padding, str) or module.padding_mode != "zeros"
        return module.groups == 1 and not padded
    return True


def _plan(policy: nn.Module, names: list[str]) -> tuple[list[_Layer], list[str]]:
    """Split trainable parameters into hooked layers and names left to ``vmap``."""
    qualified = {id(p): name for name, p in policy.named_parameters() if p.requires_grad}
    owners: dict[int, int] = {}
    for module in policy.modules():
        for p in module._parameters.values():
            if p is not None:
                owners[id(p)] = owners.get(id(p), 0) + 1
    layers, covered = [], set()
    for module in policy.modules():
        local = {
            k: qualified[id(p)]
            for k, p in module._parameters.items()
            if p is not None and id(p) in qualified
        }
        tied = any(owners[id(module._parameters[k])] > 1 for k in local)
        if local and not tied and _ghost_supported(module, list(local)):
            layers.append(_Layer(module, local))
            covered |= set(local.values())
    return layers, [name for name in names if name not in covered]


def _factors(layer: _Layer, call: int, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A [R, P, a], B [R, P, b])``: row ``r``'s weight gradient is ``B_r^T A_r``."""
    m, x = layer.module, layer.inputs[call]
    r = max(layer.rows(call), 1)
    if isinstance(m, nn.Conv2d):
        x, g = x.reshape(r, *x.shape[-3:]), g.reshape(r, *g.shape[-3:])
        a = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride).transpose(1, 2)
        return a, g.flatten(2).transpose(1, 2)
    if isinstance(m, nn.LayerNorm):
        x = F.layer_norm(x, m.normalized_shape, eps=m.eps)
        d = math.prod(m.normalized_shape)
        return x.reshape(r, -1, d), g.reshape(r, -1, d)
    return x.reshape(r, -1, x.shape[-1]), g.reshape(r, -1, g.shape[-1])


def _row_grads(
    layer: _Layer, a: torch.Tensor, b: torch.Tensor, keys: list[str]
) -> dict[str, torch.Tensor]:
    """Materialised per-row gradients ``{local name: [R, ...]}`` of the parameters ``keys``."""
    grads = {}
    if "weight" in keys:
        grads["weight"] = (a * b).sum(1) if isinstance(layer.module, nn.LayerNorm) else b.mT @ a
    if "bias" in keys:
        grads["bias"] = b.sum(1)
    return grads


def _masked_sq_sum(g: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Squared norm of each row of ``g`` (``[R, ...]``) restricted to ``mask``."""
    g = _masked(g, None if mask is None else mask.reshape(g.shape[1:]))
    return g.square().flatten(1).sum(1)


def _row_sq_norms(
    layer: _Layer, a: torch.Tensor, b: torch.Tensor, masks: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """Per-row squared gradient norm ``[R]``, without per-row weight gradients when possible."""
    out = a.new_zeros(a.shape[0])
    keys = list(layer.params)
    p, na, nb = a.shape[1:] + b.shape[2:]
    if "weight" in keys and not isinstance(layer.module, nn.LayerNorm):
        wmask = masks.get(layer.params["weight"])
        keys.remove("weight")
        if wmask is None and p == 1:
            out += a.square().sum((1, 2)) * b.square().sum((1, 2))
        elif wmask is None and p * (na + nb) < na * nb:
            # Gram trick, cheaper than the [R, b, a] gradients for few positions
            out += ((a @ a.mT) * (b @ b.mT)).sum((1, 2))
        elif p == 1:
            # ||m * g x^T||^2 = (g^2)^T m^2 (x^2)
            m2 = wmask.reshape(nb, na).to(a.dtype).square()
            out += ((b[:, 0].square() @ m2) * a[:, 0].square()).sum(1)
        else:
            keys.append("weight")
    for k, g in _row_grads(layer, a, b, keys).items():
        out += _masked_sq_sum(g, masks.get(layer.params[k]))
    return out


#: Sample indices are spelled in this base, one weighted backward per digit; digit ``d`` weighs
#: by ``2^d`` (at most 2^15: far from float32 overflow).
_BASE = 16
_MAIN = -1


class _RowsMixSamples(Exception):
    """A layer's row is not the gradient of a single sample."""


def _digits(n: int) -> int:
    """Base-16 digits needed for the indices ``0..n-1``."""
    return max(1, ((n - 1).bit_length() + 3) // 4)


def _digit_weights(n: int, k: int, like: torch.Tensor) -> torch.Tensor:
    digit = torch.arange(n, device=like.device) // _BASE**k % _BASE
    return torch.pow(2.0, digit).to(like.dtype)


def _sample_of_rows(g: torch.Tensor, gw: list[torch.Tensor], n: int) -> torch.Tensor:
    """Sample index of each row ``[R, ...]`` from its gradients: plain, and per digit weighted.

    Rows with a zero or negligible gradient get -1: below ``1e-12`` of the largest row's norm
    they add nothing to the trace, and their entries may be float32 subnormals, which do not
    scale exactly.

    Raises:
        _RowsMixSamples: if a row is not one sample's gradient scaled by a power of two.
    """
    g = g.flatten(1).double()
    gg = g.square().sum(1)
    live = gg > gg.max() * 1e-24 if gg.numel() else gg > 0
    ids = torch.zeros_like(gg, dtype=torch.long)
    bad = torch.zeros_like(live)
    for k, weighted in enumerate(gw):
        weighted = weighted.flatten(1).double()
        ratio = (weighted * g).sum(1) / gg.clamp_min(torch.finfo(g.dtype).tiny)
        digit = ratio.clamp_min(0.5).log2().round()
        err = (weighted - digit.exp2()[:, None] * g).square().sum(1)
        bad |= (digit < 0) | (digit >= _BASE) | (err > 1e-10 * weighted.square().sum(1))
        ids += digit.clamp(0, _BASE - 1).long() * _BASE**k
    bad = live & (bad | (ids >= n))
    if bad.any():
        raise _RowsMixSamples
    return torch.where(live, ids, -1)


def _layer_sq_norm_sum(layer: _Layer, n: int, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``sum_i ||mask * grad_layer log pi(a_i|s_i)||^2`` over the batch."""
    calls = [c for c in range(len(layer.inputs)) if (_MAIN, c) in layer.grads]
    if not calls:
        return torch.zeros(())
    factors = [_factors(layer, c, layer.grads[_MAIN, c]) for c in calls]
    if all(layer.rows(c) == n for c in calls):
        # batch-first: row i is sample i in every call; a sample's calls are extra positions
        a = factors[0][0] if len(calls) == 1 else torch.cat([f[0] for f in factors], 1)
        b = factors[0][1] if len(calls) == 1 else torch.cat([f[1] for f in factors], 1)
        return _row_sq_norms(layer, a, b, masks).sum()
    ids = [
        _sample_of_rows(
            layer.grads[_MAIN, c].reshape(len(b), -1),
            [layer.grads[k, c].reshape(len(b), -1) for k in range(_digits(n))],
            n,
        )
        for (_, b), c in zip(factors, calls, strict=True)
    ]
    live = torch.cat(ids)
    live = live[live >= 0]
    if live.unique().numel() == live.numel():
        return sum(
            _row_sq_norms(layer, a[i >= 0], b[i >= 0], masks).sum()
            for (a, b), i in zip(factors, ids, strict=True)
        )
    # several rows per sample: accumulate per-sample gradients before the norm
    total = torch.zeros(())
    for k, name in layer.params.items():
        acc = None
        for (a, b), i in zip(factors, ids, strict=True):
            g = _row_grads(layer, a[i >= 0], b[i >= 0], [k])[k]
            acc = acc if acc is not None else g.new_zeros(n, *g.shape[1:])
            acc.index_add_(0, i[i >= 0], g)
        total = total + _masked_sq_sum(acc, masks.get(name)).sum()
    return total


def _ghost_sq_norm_sum(
    policy: nn.Module,
    batch: Any,
    dist_fn: DistFn,
    names: list[str],
    masks: Mapping[str, torch.Tensor],
    chunk_size: int | None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Sample ``a_i ~ pi(.|s_i)``; ``sum_i ||grad log pi(a_i|s_i)||^2`` by ghost norms.

    Parameters not covered by a hooked layer go to ``vmap``.

    Returns:
        The sum (``None`` when a layer's rows mix samples) and the sampled actions.
    """
    for m in policy.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (
            m.training or not m.track_running_stats
        ):
            raise ValueError(
                "fisher_trace(method='ghost'): BatchNorm with batch statistics mixes samples; "
                "use eval mode or method='vmap'"
            )
    layers, rest = _plan(policy, names)

    def record(layer: _Layer) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
            if not (torch.is_grad_enabled() and out.requires_grad):
                return
            x = (args[0] if args else kwargs["input"]).detach()
            layer.inputs.append(x)
            layer.outputs.append(out)
            layer.versions.append((x._version, out._version))

        return hook

    def backward(stage: int, loss: torch.Tensor, of: list[_Layer], retain: bool) -> None:
        # Output gradients as autograd.grad's results, not tensor hooks: a hook closing over
        # its layer (which holds the output) is a cycle through autograd that gc cannot free.
        calls = [(layer, c) for layer in of for c in range(len(layer.outputs))]
        grads = torch.autograd.grad(
            loss, [layer.outputs[c] for layer, c in calls], retain_graph=retain, allow_unused=True
        )
        for (layer, c), g in zip(calls, grads, strict=True):
            if g is not None:
                layer.grads[stage, c] = g

    handles = [
        layer.module.register_forward_hook(record(layer), with_kwargs=True) for layer in layers
    ]
    try:
        # one forward both samples the actions (same draws as a separate no-grad pass) and
        # records the layers
        dist = dist_fn(policy, batch)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        actions = dist.sample()
    n = actions.shape[0]
    total = torch.zeros(())
    logp = dist.log_prob(actions).reshape(n, -1).sum(1)
    # a layer whose input or output was later changed in place has lost what it recorded
    rest += [q for layer in layers if layer.changed_in_place() for q in layer.params.values()]
    layers = [layer for layer in layers if not layer.changed_in_place()]
    if layers and logp.requires_grad:
        # layers whose rows are not the batch (per-task heads: a subset of the samples)
        ambiguous = [
            layer for layer in layers if any(layer.rows(c) != n for c in range(len(layer.inputs)))
        ]
        for k in range(_digits(n)) if ambiguous else ():
            backward(k, (_digit_weights(n, k, logp) * logp).sum(), ambiguous, retain=True)
        # to the layer outputs only: the weight gradients are not needed
        backward(_MAIN, logp.sum(), layers, retain=False)
        try:
            total = sum(_layer_sq_norm_sum(layer, n, masks) for layer in layers)
        except _RowsMixSamples:
            return None, actions
    if rest:
        total = (
            total + _vmap_sq_norms(policy, batch, actions, dist_fn, rest, masks, chunk_size).sum()
        )
    return total, actions
