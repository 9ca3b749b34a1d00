"""Replay buffers of the off-policy modules (SAC, DQN): memory-mapped storage and checkpoints.

:class:`ReplayCheckpointMixin` gives a :class:`~torchrl_sparse.lightning.base.MultiTaskRLModule`
a TorchRL ``LazyMemmapStorage`` in a scratch directory and carries the buffer in checkpoints:
every checkpoint first dumps the buffer with ``ReplayBuffer.dumps`` into a directory next to the
checkpoint (``<checkpoint dir>/replay_buffer`` by default) and records that path and the frame
count in the checkpoint; ``fit --ckpt_path`` loads it back with ``ReplayBuffer.loads``. The
module's ``hparams`` must hold ``buffer_scratch_dir`` and ``replay_buffer_dir``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from torchrl.data import LazyMemmapStorage, ReplayBuffer

__all__ = ["ReplayCheckpointMixin"]

_BUFFER_META = "torchrl_sparse_buffer.json"


class ReplayCheckpointMixin:
    """Memory-mapped replay storage in a scratch directory, dumped into every checkpoint.

    Subclasses set ``self.replay_buffer`` (built on :meth:`make_storage`) and call
    :meth:`save_replay_buffer` / :meth:`load_replay_buffer` from their checkpoint hooks.
    """

    replay_buffer: ReplayBuffer

    def make_storage(
        self, buffer_size: int, scratch_dir: str | None, ndim: int = 1
    ) -> LazyMemmapStorage:
        """A ``LazyMemmapStorage`` of ``buffer_size`` transitions in ``scratch_dir``.

        ``None`` makes a temporary directory, removed when the process exits normally or stops
        on SIGTERM/SIGINT.
        """
        if scratch_dir is None:
            # Our own temporary directory rather than TorchRL's auto-cleanup, whose SIGTERM
            # handler kills the process before Lightning can write its SIGTERM checkpoint.
            scratch_dir = tempfile.mkdtemp(prefix="torchrl_sparse_replay_")
            weakref.finalize(self, shutil.rmtree, scratch_dir, True)
        return LazyMemmapStorage(
            buffer_size,
            ndim=ndim,
            scratch_dir=scratch_dir,
            existsok=True,  # a resumed run may reuse its scratch directory
            auto_cleanup=False,
        )

    def setup(self, stage: str) -> None:
        storage = self.replay_buffer.storage
        configured = self.hparams.buffer_scratch_dir
        # Ranks share the configured directory but not their buffers; the rank is only known
        # now, and the lazy storage has not written anything yet.
        if configured is not None and self.trainer.world_size > 1 and not storage.initialized:
            storage.scratch_dir = str(Path(configured) / f"rank{self.global_rank}") + "/"

    def replay_buffer_path(self) -> Path | None:
        """Directory that checkpoints dump the replay buffer into (``None``: not saved)."""
        configured = self.hparams.replay_buffer_dir
        if configured == "":
            return None
        if configured is not None:
            path = Path(configured)
        else:
            callback = self.trainer.checkpoint_callback
            dirpath = getattr(callback, "dirpath", None)
            root = Path(dirpath) if dirpath else Path(self.trainer.default_root_dir)
            path = root / "replay_buffer"
        if self.trainer.world_size > 1:
            path = path.with_name(f"{path.name}_rank{self.global_rank}")
        return path.absolute()

    def save_replay_buffer(self) -> dict[str, Any] | None:
        """Dump the buffer next to the checkpoint; returns what the checkpoint records."""
        path = self.replay_buffer_path()
        if path is None or len(self.replay_buffer) == 0:
            return None
        # Write next to the destination, then swap it in: a crash mid-dump leaves the previous
        # buffer (the one the previous checkpoint references) intact.
        partial = path.with_name(path.name + ".partial")
        previous = path.with_name(path.name + ".previous")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        self.replay_buffer.dumps(partial)
        info = {"frames": self.frames, "length": len(self.replay_buffer)}
        (partial / _BUFFER_META).write_text(json.dumps(info))
        shutil.rmtree(previous, ignore_errors=True)
        if path.exists():
            path.rename(previous)
        partial.rename(path)
        shutil.rmtree(previous, ignore_errors=True)
        return {"path": str(path), **info}

    def load_replay_buffer(self, info: dict[str, Any]) -> None:
        """Load the buffer a checkpoint recorded with :meth:`save_replay_buffer`."""
        path = Path(info["path"])
        if not (path / _BUFFER_META).is_file():
            raise FileNotFoundError(
                f"The checkpoint references a replay buffer at {path}, but there is none: copy "
                "that directory along with the checkpoint (or resume without the buffer by "
                "loading the weights only)."
            )
        saved = json.loads((path / _BUFFER_META).read_text())
        if saved["frames"] != info["frames"]:
            raise ValueError(
                f"The replay buffer at {path} was written at frame {saved['frames']}, but the "
                f"checkpoint is at frame {info['frames']}: a later checkpoint overwrote it. "
                "Resume from the latest checkpoint."
            )
        self.replay_buffer.loads(path)
        if len(self.replay_buffer) != info["length"]:
            raise ValueError(
                f"Loaded {len(self.replay_buffer)} transitions from {path}; the checkpoint "
                f"expects {info['length']}."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["torchrl_sparse"]["replay_buffer"] = self.save_replay_buffer()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["torchrl_sparse"]
        if state.get("replay_buffer") is not None:
            self.load_replay_buffer(state["replay_buffer"])
