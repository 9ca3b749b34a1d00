"""Write the DQN sparse-training grid: one small YAML file per (game, condition).

Run from anywhere: ``python recipes/dqn/make_recipes.py``. Every file extends the suite's base
recipe and the method files in ``recipes/_methods/dqn/``; edit those (or this grid) and re-run.
``tests/lightning/test_dqn_recipes.py`` fails when the files and this script disagree.

The grid: {dense, GMP, RigL, SET, static} x {bias, no bias} x sparsity {0.8, 0.9, 0.95, 0.99}
(dense has no sparsity): 34 conditions per game.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
GAMES = {
    "minatar": {
        "asterix": "Asterix",
        "breakout": "Breakout",
        "freeway": "Freeway",
        "seaquest": "Seaquest",
        "space_invaders": "SpaceInvaders",
    },
    "atari": {
        "breakout": "Breakout",
        "ms_pacman": "MsPacman",
        "pong": "Pong",
        "qbert": "Qbert",
        "space_invaders": "SpaceInvaders",
    },
}
METHODS = ("gmp", "rigl", "set", "static")
SPARSITIES = ("0.8", "0.9", "0.95", "0.99")


def conditions() -> dict[str, list[str]]:
    """Condition name -> the method files it extends, in order."""
    grid: dict[str, list[str]] = {}
    for suffix, bias in (("", []), ("_nobias", ["no_bias.yaml"])):
        grid[f"dense{suffix}"] = list(bias)
        for method in METHODS:
            for sparsity in SPARSITIES:
                files = [f"{method}.yaml", f"sparsity_{sparsity}.yaml", *bias]
                grid[f"{method}_{sparsity}{suffix}"] = files
    return grid


def recipes() -> dict[Path, str]:
    """Every recipe file's path and text."""
    out: dict[Path, str] = {}
    for suite, games in GAMES.items():
        for folder, game in games.items():
            for name, files in conditions().items():
                extends = [f"../../../_base/dqn_{suite}.yaml"]
                extends += [f"../../../_methods/dqn/{f}" for f in files]
                text = (
                    f"# DQN on {suite} {game}, condition {name} (written by "
                    "recipes/dqn/make_recipes.py).\n"
                    f"extends: [{', '.join(extends)}]\n"
                    f"model:\n  init_args: {{game: {game}}}\n"
                )
                out[ROOT / suite / folder / f"{name}.yaml"] = text
    return out


if __name__ == "__main__":
    for path, text in recipes().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(recipes())} recipes under {ROOT}")
