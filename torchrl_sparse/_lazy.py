"""Lazy package exports: a name's submodule is imported on first use (PEP 562)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# The extra that installs each optional dependency (pyproject.toml).
_EXTRAS = {
    "metaworld": "metaworld",
    "mujoco": "metaworld",
    "minigrid": "minigrid",
    "gymnasium": "minigrid",
    "ale_py": "atari",
    "minatar": "minatar",
    "lightning": "cli",
    "jsonargparse": "cli",
    "tensorboard": "cli",
}


def lazy_exports(
    package: str, submodules: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` exporting ``{name: submodule}``.

    Keeps optional dependencies optional: importing the package imports no submodule, and
    ``package.name`` imports only ``package.<submodule>``.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in submodules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            submodule = importlib.import_module(f"{package}.{submodules[name]}")
        except ModuleNotFoundError as error:
            extra = _EXTRAS.get((error.name or "").split(".")[0])
            if extra is None:
                raise
            raise ModuleNotFoundError(
                f"{package}.{name} needs {error.name!r}: pip install 'torchrl-sparse[{extra}]'",
                name=error.name,
            ) from error
        value = getattr(submodule, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *submodules})

    return __getattr__, __dir__
