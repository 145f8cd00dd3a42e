"""Scoring environments side by side: every episode's step rewards equal its whole-episode rewards, with
one model call per step for all environments, through resets at different times (no SB3 needed)."""

from __future__ import annotations

import numpy as np
import pytest

from diffusion_reward.errors import UserError
from diffusion_reward.rewards.step_scoring import StepScorer, channels_last


def run_side_by_side(scorer: StepScorer, episodes: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Play each environment's episodes one after the other, all environments stepping together and an
    environment starting its next episode as soon as one ends (as a vectorized env resets automatically);
    returns each environment's step rewards per finished episode."""
    n = len(episodes)
    queue = [list(e) for e in episodes]
    current = [q.pop(0) for q in queue]
    t = np.zeros(n, dtype=int)
    scorer.reset(np.stack([c[0] for c in current]))
    rewards: list[list[list[float]]] = [[[]] for _ in range(n)]
    while any(q for q in queue) or any(t[i] + 1 < len(current[i]) for i in range(n)):
        t += 1
        # an environment with nothing left to play repeats its last frame (its rewards are not kept)
        reached = np.stack([c[min(j, len(c) - 1)] for c, j in zip(current, t)])
        step_rewards = scorer.step(reached)
        for i in range(n):
            if t[i] < len(current[i]):
                rewards[i][-1].append(float(step_rewards[i]))
            if t[i] == len(current[i]) - 1 and queue[i]:
                current[i], t[i] = queue[i].pop(0), 0
                scorer.reset(current[i][:1], envs=[i])
                rewards[i].append([])
    return [[np.array(r, np.float32) for r in env] for env in rewards]


def test_side_by_side_step_rewards_equal_whole_episode_rewards_across_resets(toy_model, make_frames):
    toy_model.fit_stats([make_frames(10, 8, seed=1) // 4, 255 - make_frames(10, 8, seed=2) // 4],
                        tasks=["dark-v3", "bright-v3"])
    lengths = [[5, 3, 6], [8, 2], [2, 4, 4, 3]]  # episodes end at different steps in each environment
    episodes = [[make_frames(t, 8, seed=10 * i + k) for k, t in enumerate(env)] for i, env in enumerate(lengths)]
    tasks = ["dark-v3", "bright-v3", None]
    calls = []
    score = toy_model.score_windows
    toy_model.score_windows = lambda windows, steps: calls.append(len(windows)) or score(windows, steps)
    rewards = run_side_by_side(StepScorer(toy_model, 3, task=tasks), episodes)
    assert calls and set(calls) == {3}  # one call per step, every environment's window in it
    for env_episodes, env_rewards, task in zip(episodes, rewards, tasks):
        assert [len(r) for r in env_rewards] == [len(e) - 1 for e in env_episodes]
        for frames, got in zip(env_episodes, env_rewards):
            np.testing.assert_allclose(got, toy_model.rewards(frames, task=task)[1:], atol=1e-6)
    # the stochastic toy model draws each step's noise from its step index: another run gives the same
    np.testing.assert_array_equal(np.concatenate(rewards[0]),
                                  np.concatenate(run_side_by_side(StepScorer(toy_model, 3, task=tasks), episodes)[0]))


def test_rewards_windows_scores_windows_of_different_episodes_in_batches(toy_model, make_frames):
    toy_model.fit_stats([make_frames(10, 8, seed=1) // 4, 255 - make_frames(10, 8, seed=2) // 4],
                        tasks=["dark-v3", "bright-v3"])
    episodes = [make_frames(t, 8, seed=t) for t in (4, 6, 3, 5, 2)]
    tasks = ["dark-v3", None, "bright-v3", "dark-v3", "unseen-v3"]
    steps = [3, 1, 0, 4, 1]
    windows = np.stack([e[np.clip(np.arange(j - 2, j + 1), 0, None)] for e, j in zip(episodes, steps)])
    toy_model.max_batch = 2
    got = toy_model.rewards_windows(windows, steps, tasks=tasks)
    expected = [toy_model.rewards(e, task=task)[j] for e, j, task in zip(episodes, steps, tasks)]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    raw = toy_model.rewards_windows(windows, steps, raw=True)
    np.testing.assert_allclose(raw, [toy_model.rewards(e, raw=True)[j] for e, j in zip(episodes, steps)], atol=1e-6)
    with pytest.raises(UserError, match="one window; use window\\[None\\]"):
        toy_model.rewards_windows(windows[0], steps[:1])
    with pytest.raises(UserError, match="one step index per window"):
        toy_model.rewards_windows(windows, steps[:4])
    with pytest.raises(UserError, match="one task per window"):
        toy_model.rewards_windows(windows, steps, tasks=tasks[:2])


def test_scorer_resizes_on_request_and_refuses_misuse(toy_model, make_frames):
    scorer = StepScorer(toy_model, 2)
    with pytest.raises(UserError, match="reset every environment before step"):
        scorer.step(make_frames(2, 8))
    scorer.reset(make_frames(1, 8), envs=[1])
    with pytest.raises(UserError, match="reset every environment before step"):
        scorer.step(make_frames(2, 8))
    scorer.reset(make_frames(1, 8), envs=[0])
    with pytest.raises(UserError, match="StepScorer frames: expected 2 frames, got 3"):
        scorer.step(make_frames(3, 8))
    with pytest.raises(UserError, match="of 8x8, got 16x16"):
        scorer.step(make_frames(2, 16))
    with pytest.raises(UserError, match="got 3 tasks for 2 environments"):
        StepScorer(toy_model, 2, task=["a", "b", "c"])
    big = make_frames(4, 16, seed=3)
    resized = StepScorer(toy_model, 2, resize=True)
    resized.reset(big[:2])
    assert resized.step(big[2:]).shape == (2,)
    assert resized.windows.shape == (2, 3, 8, 8, 3)


def test_channels_last_reads_both_layouts(make_frames):
    frames = make_frames(2, 8)
    np.testing.assert_array_equal(channels_last(frames.transpose(0, 3, 1, 2)), frames)
    np.testing.assert_array_equal(channels_last(frames), frames)
    square = make_frames(2, 3)  # 3x3 frames: both layouts fit; the model's image size decides
    np.testing.assert_array_equal(channels_last(square.transpose(0, 3, 1, 2), image_size=3), square)
    with pytest.raises(UserError, match="uint8 images"):
        channels_last(frames.astype(np.float32))
