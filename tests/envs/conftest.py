"""Shared, expensive environment fixtures for the environment tests."""

from __future__ import annotations

import pytest

from torchrl_sparse.envs import MetaWorldMultiTaskEnv, make_metaworld_env


@pytest.fixture(scope="session")
def mt10_env() -> MetaWorldMultiTaskEnv:
    """MetaWorld MT10 (about 10 s to build), built once per test process."""
    return make_metaworld_env("MT10", seed=0)
