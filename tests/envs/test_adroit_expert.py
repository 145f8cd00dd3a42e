"""The Adroit planning expert: its reward matches the environment's, it plans exactly, deterministically and usefully."""

from __future__ import annotations

import numpy as np
import pytest

from diffusion_reward.data.policies import make_policy
from diffusion_reward.envs import expert_policy, make_env
from diffusion_reward.envs.adroit_expert import (
    OBJECTIVES,
    AdroitPlanner,
    PlannerSettings,
)
from diffusion_reward.errors import UserError

TINY = PlannerSettings(samples=8, horizon=5, replan_every=1)


@pytest.fixture(scope="module", params=["door", "hammer", "pen"])
def state_env(request):
    env = make_env(request.param, pixels=False)
    yield env
    env.close()


def test_dense_objective_is_the_environments_dense_reward(state_env):
    objective = OBJECTIVES[state_env.task_spec.name](state_env.simulator.env)
    state_env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, reward, _ = state_env.simulator.step(rng.uniform(-1, 1, state_env.action_space.shape).astype(np.float32))
        assert objective.dense(state_env.simulator.data) == pytest.approx(reward, abs=1e-12)


def test_progress_measures_are_numbers_that_move_with_the_hand(state_env):
    """The benchmark's --trace-every reads these to show where a failed episode stuck."""
    objective = OBJECTIVES[state_env.task_spec.name](state_env.simulator.env)
    state_env.reset(seed=3)
    before = objective.progress(state_env.simulator.data)
    rng = np.random.default_rng(0)
    for _ in range(10):
        state_env.simulator.step(rng.uniform(-1, 1, state_env.action_space.shape).astype(np.float32))
    after = objective.progress(state_env.simulator.data)
    assert set(before) == set(after) and all(np.isfinite(v) for v in after.values())
    assert any(before[k] != after[k] for k in before)


def test_planner_is_deterministic_given_the_seed(state_env):
    def actions(seed: int) -> np.ndarray:
        state, _ = state_env.reset(seed=7)
        planner = AdroitPlanner(state_env, TINY, seed=seed)
        out = []
        for _ in range(3):
            out.append(planner(state))
            state, *_ = state_env.step(out[-1])
        return np.stack(out)

    first, again, other = actions(0), actions(0), actions(1)
    assert first.dtype == np.float32 and first.shape == (3, *state_env.action_space.shape)
    assert np.all(np.abs(first) <= 1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_plans_transfer_exactly_and_noise_triggers_replanning(state_env):
    """The planner's rollouts reproduce the real steps bit for bit, so it only replans on schedule;
    when the executed action is perturbed (a noisy expert) the state leaves the plan and it replans."""
    settings = PlannerSettings(samples=4, horizon=4, replan_every=3)
    for std, plans in ((0.0, 2), (0.3, 6)):
        state, _ = state_env.reset(seed=1)
        planner = AdroitPlanner(state_env, settings, seed=0)
        policy = make_policy(f"noisy:{std}", state_env.task_spec.name, state_env.action_space, seed=0, expert=planner)
        for _ in range(6):
            state, *_ = state_env.step(policy(state))
        assert planner.plans_made == plans


def ten_steps(task: str, make_policy_for) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Dense return, planning-objective return, first and last state of 10 agent steps from seed 5."""
    env = make_env(task, pixels=False)
    objective = OBJECTIVES[task](env.simulator.env)
    first, _ = env.reset(seed=5)
    policy, state = make_policy_for(env), first
    dense = score = 0.0
    for _ in range(10):
        state, _, _, _, info = env.step(policy(state))
        dense += info["dense_reward"]
        score += objective.score(env.simulator.data)
    env.close()
    return dense, score, first, state


def test_a_tiny_planner_beats_random_actions():
    """On pen the planner earns more of the environment's dense reward than random actions; on door
    (whose dense reward pays for distance from the handle) it scores higher on its objective and
    halves the palm's distance to the handle."""
    def planner(env):
        return AdroitPlanner(env, TINY, seed=0)

    def random(env):
        return make_policy("random", env.task_spec.name, env.action_space, seed=0)

    assert ten_steps("pen", planner)[0] > ten_steps("pen", random)[0]
    _, score, first, last = ten_steps("door", planner)
    assert score > ten_steps("door", random)[1]
    palm_to_handle = slice(35, 38)
    assert np.linalg.norm(last[palm_to_handle]) < 0.5 * np.linalg.norm(first[palm_to_handle])


def test_expert_policy_needs_the_environment_for_adroit():
    with pytest.raises(UserError, match="plans on the simulator"):
        expert_policy("door")
    env = make_env("pen", pixels=False)
    try:
        with pytest.raises(UserError, match="plans on the simulator"):
            expert_policy("door", env=env)
        assert isinstance(expert_policy("pen", env=env, seed=0), AdroitPlanner)
    finally:
        env.close()


def test_bad_planner_settings_are_user_errors():
    for bad in (PlannerSettings(samples=1), PlannerSettings(horizon=4, replan_every=5),
                PlannerSettings(noise_smoothing=1.0), PlannerSettings(temperature=-1.0)):
        with pytest.raises(UserError, match="planner settings"):
            bad.validate()
