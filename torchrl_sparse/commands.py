"""The ``torchrl-sparse`` entry point: one command per job, imported only when run.

- ``torchrl-sparse fit ...``: train one condition (LightningCLI over the recipes,
  :mod:`torchrl_sparse.lightning.cli`);
- ``torchrl-sparse evaluate RUN``: evaluate a checkpoint (:mod:`torchrl_sparse.lightning.evaluate`);
- ``torchrl-sparse sweep RECIPES``: every condition x seed (:mod:`torchrl_sparse.experiments`);
- ``torchrl-sparse report RUNS --out DIR``: tables and figures (:mod:`torchrl_sparse.report`);
- ``torchrl-sparse lottery --task ID``: the lottery-ticket study, RL vs behaviour cloning
  (:mod:`torchrl_sparse.lottery`).

Each command's module is imported only when it runs, so ``report`` does not wait for
Lightning and ``sweep`` does not import torch before it forks its runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

__all__ = ["COMMANDS", "OneLineErrorParser", "main"]

#: Commands besides ``fit``: name -> (module, function of argv returning an exit status).
COMMANDS = {
    "evaluate": ("torchrl_sparse.lightning.evaluate", "main"),
    "sweep": ("torchrl_sparse.experiments.cli", "main"),
    "report": ("torchrl_sparse.report.cli", "main"),
    "lottery": ("torchrl_sparse.lottery.cli", "main"),
}


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one ``error:`` line and exit status 2.

    Examples:
        >>> parser = OneLineErrorParser(prog="torchrl-sparse sweep")
        >>> _ = parser.add_argument("--jobs", type=int)
        >>> try:
        ...     parser.parse_args(["--jobs", "two"])
        ... except SystemExit as exit:
        ...     print(exit.code)
        2
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def main(args: list[str] | None = None) -> None:
    """Run ``torchrl-sparse`` with ``args`` (default: ``sys.argv[1:]``) and exit with its status."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in COMMANDS:
        module_name, function = COMMANDS[argv[0]]
        sys.exit(getattr(importlib.import_module(module_name), function)(argv[1:]))
    from torchrl_sparse.lightning.cli import main as fit_main

    fit_main(args)
