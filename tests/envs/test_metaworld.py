"""Tests of the MetaWorld MT10 suite (real MuJoCo simulation; built once per process)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metaworld.policies import ENV_POLICY_MAP
from tensordict import TensorDictBase
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import check_env_specs

from torchrl_sparse.envs import (
    METAWORLD_SUITES,
    MetaWorldMultiTaskEnv,
    make_metaworld_env,
    metaworld_task_names,
    per_task_mean,
)


def test_specs(mt10_env: TransformedEnv) -> None:
    check_env_specs(mt10_env)
    td = mt10_env.reset()
    assert td["observation"].dtype == torch.float32
    assert td["observation"].shape == (10, 39)
    assert torch.equal(td["task_onehot"], torch.eye(10))
    assert td["task_id"].tolist() == list(range(10))
    assert mt10_env.action_spec.shape == (10, 4)
    assert mt10_env.base_env.task_names == list(METAWORLD_SUITES["MT10"])


def test_observation_spec_covers_the_goal(mt10_env: TransformedEnv) -> None:
    base = mt10_env.base_env
    obs = mt10_env.reset()["observation"]
    declared = base._envs[0].observation_space
    # MetaWorld's own space declares zeros for the goal, which the observation violates.
    assert not declared.contains(obs[0].double().numpy())
    assert obs[:, -3:].abs().sum() > 0
    assert base.observation_spec["observation"].is_in(obs)


def test_seeding_reproduces_rollouts(mt10_env: TransformedEnv) -> None:
    def run() -> torch.Tensor:
        mt10_env.set_seed(7)
        torch.manual_seed(7)
        return mt10_env.rollout(5, break_when_any_done=False)["next", "observation"]

    assert torch.equal(run(), run())


def test_500_step_episodes_with_new_goals(mt10_env: TransformedEnv) -> None:
    mt10_env.set_seed(0)
    torch.manual_seed(0)
    td = mt10_env.rollout(501, break_when_any_done=False)
    done = td["next", "done"][..., 0]
    assert done[:, 499].all() and not done[:, :499].any()
    assert td["next", "truncated"][:, 499].all() and not td["next", "terminated"].any()
    assert (td["next", "episode_length"][:, 499] == 500).all()
    # The step after the end starts a new episode with a newly drawn goal.
    old_goal, new_goal = td["observation"][:, 0, -3:], td["observation"][:, 500, -3:]
    assert (old_goal != new_goal).any(-1).sum() >= 8
    assert (td["episode_length"][:, 500] == 0).all()


@pytest.mark.filterwarnings(r"ignore:Constant\(s\) may be too high")
def test_scripted_rollout_reports_success(mt10_env: TransformedEnv) -> None:
    experts = [ENV_POLICY_MAP[name]() for name in mt10_env.base_env.task_names]

    def policy(td: TensorDictBase) -> TensorDictBase:
        obs = td["observation"].double().numpy()
        actions = [expert.get_action(o) for expert, o in zip(experts, obs, strict=True)]
        return td.set(
            "action", torch.as_tensor(np.stack(actions), dtype=torch.float32).clamp(-1, 1)
        )

    mt10_env.set_seed(0)
    td = mt10_env.rollout(150, policy, break_when_any_done=False)
    last = td[:, -1]
    rate = per_task_mean(last["next", "episode_success"], last["task_id"], 10)
    print(
        "MT10 scripted success rate per task:",
        dict(zip(mt10_env.base_env.task_names, rate.tolist(), strict=True)),
    )
    assert rate.shape == (10,)
    assert rate[0] == 1.0  # reach-v3
    assert rate.mean() >= 0.8
    # "success" is info["success"] per step; episode_success is its running "ever".
    success = td["next", "success"][..., 0]
    assert torch.equal(td["next", "episode_success"][..., 0], success.cummax(1).values)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="allowed: \\['MT10', 'MT50'\\]"):
        MetaWorldMultiTaskEnv("MT20")


def test_explicit_task_list_runs_those_tasks() -> None:
    env = make_metaworld_env(["reach-v3", "window-close-v3"], seed=0, max_episode_steps=5)
    check_env_specs(env)
    assert env.base_env.task_names == ["reach-v3", "window-close-v3"]
    rollout = env.rollout(6, break_when_any_done=False)
    assert rollout["task_id"][:, 0].tolist() == [0, 1]
    assert rollout["next", "truncated"][:, 4].all()
    classes = [type(e.unwrapped).__name__ for e in env.base_env._envs]
    assert classes == ["SawyerReachEnvV3", "SawyerWindowCloseEnvV3"]


@pytest.mark.parametrize(
    ("suite", "message"),
    [
        ("MT11", "Unknown MetaWorld suite 'MT11'"),
        (["reach-v3", "fly-v3"], r"unknown: \['fly-v3'\]"),
        (["reach-v3", "reach-v3"], "distinct task names"),
        ([], "distinct task names"),
    ],
)
def test_bad_suites_are_refused(suite, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metaworld_task_names(suite)
