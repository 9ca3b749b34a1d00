"""The parameter counts of DESIGN.md section 4 come out exactly."""

from __future__ import annotations

import pytest

from torchrl_sparse.modules import (
    count_parameters,
    make_ppo_actor,
    make_ppo_critic,
    make_sac_actor,
    make_sac_qvalue,
    multihead_mlp_param_count,
)

PPO_COUNTS = {
    ("MT3", "mtppo"): (406_853, 404_531),
    ("MT5", "mtppo"): (671_059, 667_189),
    ("MT7", "mtppo"): (935_265, 929_847),
    ("MT3", "moe"): (417_403, 415_081),
    ("MT5", "moe"): (692_162, 688_292),
    ("MT7", "moe"): (966_925, 961_507),
    ("MT3", "moore"): (417_403, 415_081),
    ("MT5", "moore"): (692_162, 688_292),
    ("MT7", "moore"): (966_925, 961_507),
}


@pytest.mark.parametrize(("suite", "arch"), list(PPO_COUNTS))
def test_ppo_counts(suite: str, arch: str) -> None:
    actor, critic = PPO_COUNTS[suite, arch]
    assert count_parameters(make_ppo_actor(suite, arch)) == actor
    assert count_parameters(make_ppo_critic(suite, arch)) == critic


def test_sac_counts_follow_the_closed_form() -> None:
    assert count_parameters(make_sac_actor("MT10")) == multihead_mlp_param_count(400, 49, 8, 10)
    assert count_parameters(make_sac_qvalue("MT10")) == multihead_mlp_param_count(400, 53, 1, 10)
    assert count_parameters(make_sac_actor("MT10", width=800, layer_norm=True)) == (
        multihead_mlp_param_count(800, 49, 8, 10, layer_norm=True)
    )


def test_moore_mt10_actor_count() -> None:
    # 4 experts of Linear(39,400)-Linear(400,400)-Linear(400,400), task weights 10x4, 10 heads.
    experts = 4 * (40 * 400 + 2 * 401 * 400)
    assert count_parameters(make_sac_actor("MT10", arch="moore")) == experts + 40 + 10 * 401 * 8
