"""MiniGrid observation processing as a TorchRL transform."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import NestedKey, TensorDictBase
from torchrl.data import Bounded, Composite
from torchrl.envs import Transform

__all__ = ["MiniGridObservation"]


class MiniGridObservation(Transform):
    """Turns MiniGrid's symbolic grid into a float, channels-first tensor, unscaled.

    This is the observation handling of MOORE and Todorov et al.: the ``7x7x3`` egocentric grid
    (``ImgObsWrapper``'s ``image``; object, colour and state indices) as ``float32``
    ``[..., 3, 7, 7]``, with **no** division by 255 since the values are small indices, not
    pixels. By default the key is transformed in place.

    Args:
        in_keys: key(s) holding the ``[..., H, W, 3]`` grid. Defaults to ``["observation"]``.
        out_keys: key(s) to write the ``[..., 3, H, W]`` float grid to. Defaults to ``in_keys``.

    Raises:
        ValueError: (when called) if the last dimension is not 3 channels.

    Examples:
        >>> from tensordict import TensorDict
        >>> td = TensorDict(
        ...     {"observation": torch.randint(0, 11, (4, 7, 7, 3), dtype=torch.uint8)},
        ...     batch_size=[4],
        ... )
        >>> out = MiniGridObservation()(td)["observation"]
        >>> out.shape, out.dtype
        (torch.Size([4, 3, 7, 7]), torch.float32)
    """

    def __init__(
        self,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        in_keys = ["observation"] if in_keys is None else list(in_keys)
        out_keys = list(in_keys) if out_keys is None else list(out_keys)
        super().__init__(in_keys=in_keys, out_keys=out_keys)

    def _apply_transform(self, grid: torch.Tensor) -> torch.Tensor:
        if grid.ndim < 3 or grid.shape[-1] != 3:
            raise ValueError(
                f"expected a MiniGrid grid of shape [..., H, W, 3], got {tuple(grid.shape)}."
            )
        return grid.movedim(-1, -3).float()

    def _reset(
        self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase
    ) -> TensorDictBase:
        # The first observation of an episode comes from reset: transform it too.
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys, strict=True):
            if in_key not in observation_spec.keys(include_nested=True):
                continue
            spec = observation_spec[in_key]
            *batch, h, w, c = spec.shape
            low = spec.space.low.min().item() if isinstance(spec, Bounded) else 0
            high = spec.space.high.max().item() if isinstance(spec, Bounded) else 255
            observation_spec[out_key] = Bounded(
                low, high, shape=(*batch, c, h, w), dtype=torch.float32, device=spec.device
            )
        return observation_spec
