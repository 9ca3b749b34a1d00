"""The DQN recipe grid: files match their generator, and every file loads to a valid condition."""

from __future__ import annotations

import importlib.util

import pytest

from torchrl_sparse.lightning.recipes import load_recipe

from .conftest import REPO

_SPEC = importlib.util.spec_from_file_location("make_recipes", REPO / "recipes/dqn/make_recipes.py")
make_recipes = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(make_recipes)


def test_files_match_the_generator() -> None:
    expected = make_recipes.recipes()
    on_disk = set((REPO / "recipes" / "dqn").rglob("*.yaml"))
    assert on_disk == set(expected), "re-run python recipes/dqn/make_recipes.py"
    stale = [p for p, text in expected.items() if p.read_text() != text]
    assert not stale, f"re-run python recipes/dqn/make_recipes.py: {stale[:3]}"
    assert len(expected) == 10 * 34


@pytest.mark.parametrize("suite", ["minatar", "atari"])
def test_every_condition_resolves(suite: str) -> None:
    for path in sorted((REPO / "recipes" / "dqn" / suite).rglob("*.yaml")):
        recipe = load_recipe(path)
        args = recipe["model"]["init_args"]
        assert args["suite"] == suite
        assert args["bias"] is not path.stem.endswith("_nobias"), path
        callbacks = [c for c in recipe["trainer"]["callbacks"] if "Sparsity" in c["class_path"]]
        if path.stem.startswith("dense"):
            assert not callbacks, path
            continue
        method, sparsity = path.stem.split("_")[:2]
        (callback,) = callbacks
        assert callback["init_args"]["groups"] == {"value_network.*": float(sparsity)}, path
        assert callback["init_args"]["distribution"]["class_path"].endswith("ERK")
        expected = {"gmp": "GMP", "rigl": "RigL", "set": "SET", "static": "StaticSparse"}[method]
        assert callback["init_args"]["method"]["class_path"].endswith("." + expected), path
