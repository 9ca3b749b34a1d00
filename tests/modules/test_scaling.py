"""Parameter-matched width search (McLean et al. 2025)."""

from __future__ import annotations

import pytest

from torchrl_sparse.modules import (
    count_parameters,
    make_sac_actor,
    make_sac_qvalue,
    match_width,
    multihead_mlp_param_count,
)


def test_moore_mt10_actor_matches_width_800() -> None:
    target = count_parameters(make_sac_actor("MT10", arch="moore"))
    exact = match_width(target, in_dim=39 + 10, out_dim=8, num_tasks=10)
    assert exact == 798
    assert match_width(target, in_dim=49, out_dim=8, num_tasks=10, multiple_of=50) == 800
    matched = count_parameters(make_sac_actor("MT10", width=exact))
    for other in (exact - 1, exact + 1):
        assert abs(matched - target) <= abs(multihead_mlp_param_count(other, 49, 8, 10) - target)


def test_actor_and_critic_are_matched_separately() -> None:
    critic_target = count_parameters(make_sac_qvalue("MT10", arch="moore"))
    critic_width = match_width(critic_target, in_dim=39 + 4 + 10, out_dim=1, num_tasks=10)
    assert critic_width != 798
    critic = make_sac_qvalue("MT10", width=critic_width)
    assert abs(count_parameters(critic) - critic_target) / critic_target < 0.005
    # Only the critic is scaled: the default actor is untouched.
    assert count_parameters(make_sac_actor("MT10")) == multihead_mlp_param_count(400, 49, 8, 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_params": 10}, "achievable counts range from"),
        ({"target_params": 10**12}, "achievable counts range from"),
        ({"target_params": 10**6, "num_tasks": 0}, "num_tasks must be >= 1"),
        ({"target_params": 10**6, "multiple_of": 4096, "rtol": 0.01}, "multiple of 4096"),
    ],
)
def test_unmatchable_targets(kwargs: dict, match: str) -> None:
    args = {"in_dim": 49, "out_dim": 8, "num_tasks": 10} | kwargs
    with pytest.raises(ValueError, match=match):
        match_width(**args)
