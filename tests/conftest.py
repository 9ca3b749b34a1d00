"""Session-wide test settings."""

import os

import torch

# `pytest -n 2` runs two workers on two cores: one intra-op thread each, or OpenMP threads
# oversubscribe the cores and every kernel slows down many times over.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the CLI subprocesses of the tests
