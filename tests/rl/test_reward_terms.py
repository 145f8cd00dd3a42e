"""Reward composition in the RL loop: n-step returns of the composed reward, paired frame replay, state RND."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_reward.data.episodes import DatasetWriter, Episode
from diffusion_reward.errors import UserError
from diffusion_reward.rewards import MotionReward
from diffusion_reward.rl.replay import ReplayBuffer
from diffusion_reward.rl.reward_terms import Bonus, RewardTerms, build_reward_terms
from diffusion_reward.rl.state_rnd import PRESETS, StateRND
from diffusion_reward.utils.device import torch_threads

GAMMA, NSTEP, STEPS = 0.9, 3, 8


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield


class IndexBonus:
    """A stand-in online model: the bonus of an observation is 0.1 x the step index written in it."""

    kind = "index"

    def __init__(self, frames: bool):
        self.frames = frames
        self.updates: list[torch.Tensor] = []

    def index(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, 0, 0, 0].float() / 10 if self.frames else obs[:, 0].float()

    def bonus(self, obs: torch.Tensor) -> torch.Tensor:
        return 0.1 * self.index(obs)

    def update(self, batch):
        self.updates.append(self.index(batch["next_obs"]))
        return {"reward/index_loss": 1.0}


def episode(rng: np.random.Generator):
    """States whose first entry is the step index; sparse and model rewards that differ per step."""
    obs = np.zeros((STEPS + 1, 2), np.float32)
    obs[:, 0] = np.arange(STEPS + 1)
    frames = np.zeros((STEPS + 1, 3, 4, 4), np.uint8)
    frames[:] = (10 * np.arange(STEPS + 1))[:, None, None, None]
    actions = rng.uniform(-1, 1, (STEPS, 2)).astype(np.float32)
    sparse = (np.arange(STEPS) % 3 == 0).astype(np.float32)
    model = np.linspace(-1, 1, STEPS).astype(np.float32)
    return obs, frames, actions, sparse, model


def expected_return(t: int, sparse, model, alpha: float) -> float:
    return sum(GAMMA**k * (sparse[t + k] + (1 - alpha) * model[t + k] + alpha * 0.1 * (t + k + 1))
               for k in range(NSTEP))


@pytest.mark.parametrize("bonus_reads_frames", [False, True])
def test_sampled_reward_is_the_n_step_sum_of_the_composed_terms(bonus_reads_frames):
    rng = np.random.default_rng(0)
    obs, frames, actions, sparse, model = episode(rng)
    replay = ReplayBuffer(100, nstep=NSTEP, discount=GAMMA)
    replay.add(obs, actions, sparse, {"model": model})
    frame_replay = None
    if bonus_reads_frames:  # a state run whose RND reads frames: a second replay of frames in step
        frame_replay = ReplayBuffer(100, nstep=NSTEP, discount=GAMMA)
        frame_replay.add(frames, actions, sparse)
    fake = IndexBonus(bonus_reads_frames)
    alpha = 0.3
    terms = RewardTerms("test", alpha, MotionReward(device="cpu"), [Bonus("rnd", fake, bonus_reads_frames)],
                        pixels=False)
    assert terms.needs_episode_frames and terms.needs_frame_replay == bonus_reads_frames

    batch, metrics = terms.sample(replay, np.random.default_rng(1), 64, "cpu", frame_replay=frame_replay)
    starts = batch["obs"][:, 0].long().numpy()
    assert len(set(starts)) > 3
    want = [expected_return(t, sparse, model, alpha) for t in starts]
    np.testing.assert_allclose(batch["reward"].numpy(), want, rtol=1e-5)
    # the online model trained on the observation n steps later, from the replay it reads
    np.testing.assert_array_equal(fake.updates[0].numpy(), starts + NSTEP)
    steps = starts[:, None] + np.arange(NSTEP)
    np.testing.assert_allclose(metrics["reward/sparse"], sparse[steps].mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["reward/model"], (1 - alpha) * model[steps].mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["reward/rnd"], alpha * 0.1 * (steps + 1).mean(), rtol=1e-5)
    total = metrics["reward/sparse"] + metrics["reward/model"] + metrics["reward/rnd"]
    assert metrics["reward/total"] == pytest.approx(total, rel=1e-5)
    assert metrics["reward/index_loss"] == 1.0


def test_sparse_only_sampling_returns_the_discounted_sparse_reward():
    rng = np.random.default_rng(0)
    obs, _, actions, sparse, _ = episode(rng)
    replay = ReplayBuffer(100, nstep=NSTEP, discount=GAMMA)
    replay.add(obs, actions, sparse)
    terms = build_reward_terms("sparse", pixels=False, image_size=64, state_dim=2, task="reach-v3")
    batch, metrics = terms.sample(replay, np.random.default_rng(1), 32, "cpu")
    starts = batch["obs"][:, 0].long().numpy()
    want = [sum(GAMMA**k * sparse[t + k] for k in range(NSTEP)) for t in starts]
    np.testing.assert_allclose(batch["reward"].numpy(), want, rtol=1e-6)
    assert set(metrics) == {"reward/sparse", "reward/total"}


def test_episode_components_score_the_frame_each_step_reaches():
    frames = np.random.default_rng(0).integers(0, 256, (STEPS + 1, 8, 8, 3), dtype=np.uint8)
    terms = RewardTerms("motion", 0.0, MotionReward(device="cpu"), [], pixels=True)
    components = terms.episode_components(frames, STEPS)
    np.testing.assert_array_equal(components["model"], MotionReward().rewards(frames)[1:])
    with pytest.raises(ValueError, match="needs 9 frames"):
        terms.episode_components(frames[:-1], STEPS)


def test_the_episode_reward_is_standardized_with_the_run_tasks_statistics(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (STEPS + 1, 8, 8, 3), dtype=np.uint8)
    calm = (frames // 8).astype(np.uint8)  # much less pixel change: another task's reward level
    motion = MotionReward(device="cpu")
    motion.fit_stats([frames, calm], tasks=["busy-v3", "calm-v3"])
    motion.save_pretrained(tmp_path / "motion")
    warnings: list[str] = []
    for task, stats in (("busy-v3", motion.task_stats["busy-v3"]), ("calm-v3", motion.task_stats["calm-v3"]),
                        ("unseen-v3", motion.stats)):
        terms = build_reward_terms("motion", pixels=False, image_size=8, state_dim=4, task=task, alpha=0.0,
                                   reward_model=str(tmp_path / "motion"), warn=warnings.append)
        components = terms.episode_components(frames, STEPS)
        np.testing.assert_allclose(components["model"], stats.standardize(motion.rewards(frames, raw=True)[1:]),
                                   rtol=1e-6)
        assert ("pooled" if task == "unseen-v3" else f"{task}'s expert statistics") in terms.describe()
    assert len(warnings) == 1 and "unseen-v3" in warnings[0] and "pooled" in warnings[0]


def test_state_rnd_bonus_is_higher_on_novel_states():
    torch.manual_seed(0)
    rnd = StateRND(6, PRESETS["tiny"])
    rng = np.random.default_rng(0)
    familiar = rng.normal(0, 0.1, (256, 6)).astype(np.float32)
    for _ in range(300):
        metrics = rnd.update({"next_obs": torch.from_numpy(familiar[rng.integers(0, 256, 64)])})
    assert metrics["reward/rnd_loss"] >= 0 and np.isfinite(metrics["reward/rnd_error_std"])
    novel = rng.normal(3, 0.1, (256, 6)).astype(np.float32)
    assert rnd.bonus(familiar).mean() < rnd.bonus(novel).mean() / 3
    with pytest.raises(UserError, match=r"shape \(B, 6\)"):
        rnd.bonus(np.zeros((4, 5), np.float32))


def test_online_model_state_round_trips_exactly(tmp_path):
    def build():
        return build_reward_terms("rnd", pixels=False, image_size=64, state_dim=6, task="reach-v3",
                                  bonus_preset="tiny", seed=3)

    rng = np.random.default_rng(0)
    batches = [{"next_obs": torch.from_numpy(rng.normal(size=(32, 6)).astype(np.float32))} for _ in range(4)]
    terms = build()
    rnd = terms.bonuses[0].model
    for batch in batches[:2]:
        rnd.update(batch)
    terms.save_state(tmp_path / "reward")
    after = [rnd.update(b) for b in batches[2:]]

    restored = build()
    restored.load_state(tmp_path / "reward")
    assert [restored.bonuses[0].model.update(b) for b in batches[2:]] == after
    for key, value in rnd.state_tensors().items():
        assert torch.equal(value, restored.bonuses[0].model.state_tensors()[key]), key


def test_reward_settings_that_cannot_work_are_clear_errors(tmp_path):
    common = {"image_size": 64, "state_dim": 39, "task": "reach-v3"}
    with pytest.raises(UserError, match="needs --reward-model"):
        build_reward_terms("diffusion", pixels=True, **common)
    with pytest.raises(UserError, match="--expert-data"):
        build_reward_terms("amp", pixels=True, **common)
    with pytest.raises(UserError, match="no such reward model directory"):
        build_reward_terms("viper", pixels=True, reward_model=str(tmp_path / "missing"), **common)
    with pytest.raises(UserError, match="drop --reward-model"):
        build_reward_terms("sparse", pixels=True, reward_model=str(tmp_path), **common)
    with pytest.raises(UserError, match="needs a state run"):
        build_reward_terms("rnd", pixels=True, rnd_input="state", **common)
    with pytest.raises(UserError, match="no default RND weight"):
        build_reward_terms("mystery", pixels=True, **common)
    terms = build_reward_terms("rnd", pixels=False, rnd_input="pixels", **common)
    assert terms.needs_frame_replay and not terms.needs_episode_frames
    motion = MotionReward(device="cpu")
    motion.cameras = {"reach-v3": ["corner2-near"]}
    motion.save_pretrained(tmp_path / "near")
    with pytest.raises(UserError, match="--camera corner2-near"):
        build_reward_terms("motion", pixels=True, reward_model=str(tmp_path / "near"), camera="corner2", **common)
    build_reward_terms("motion", pixels=True, reward_model=str(tmp_path / "near"), camera="corner2-near", **common)
    # AMP's expert frames must come from the run's camera too
    writer = DatasetWriter(tmp_path / "experts", {"image_size": 16})
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    writer.add(Episode(frames=frames), task="reach-v3", policy="expert", split="train", seed=0, camera="corner2-near")
    writer.flush()
    amp_args = {"image_size": 16, "state_dim": 39, "task": "reach-v3", "expert_data": str(tmp_path / "experts"),
                "bonus_preset": "tiny", "alpha": 0.0}
    with pytest.raises(UserError, match="--expert-data .*reach-v3's frames from camera corner2-near"):
        build_reward_terms("amp", pixels=True, camera="corner2", **amp_args)
    build_reward_terms("amp", pixels=True, camera="corner2-near", **amp_args)


def _amp_terms(tmp_path, scoring):
    from diffusion_reward.rl.reward_terms import OnlineScoring

    writer = DatasetWriter(tmp_path / "experts", {"image_size": 16})
    rng = np.random.default_rng(0)
    writer.add(Episode(frames=rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)), task="reach-v3",
               policy="expert", split="train", seed=0)
    return build_reward_terms("amp", pixels=False, image_size=16, state_dim=2, task="reach-v3",
                              expert_data=str(tmp_path / "experts"), bonus_preset="tiny", seed=1,
                              online_scoring=OnlineScoring(*scoring))


def _filled_replays(terms, rng):
    replay = ReplayBuffer(1000, nstep=NSTEP, discount=GAMMA)
    frame_replay = ReplayBuffer(1000, nstep=NSTEP, discount=GAMMA)
    for _ in range(3):
        obs, _, actions, sparse, _ = episode(rng)
        frames = rng.integers(0, 256, (STEPS + 1, 16, 16, 3), dtype=np.uint8)
        replay.add(obs, actions, sparse, terms.episode_components(frames, STEPS))
        frame_replay.add(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)), actions, sparse)
    return replay, frame_replay


def test_amp_scored_per_episode_stores_the_discriminators_reward_and_trains_every_k_batches(tmp_path):
    terms = _amp_terms(tmp_path, ("episode", 3, 8))
    amp = terms.episode_bonus.model
    assert not terms.bonuses and terms.needs_episode_frames and terms.needs_frame_replay
    frames = np.random.default_rng(5).integers(0, 256, (STEPS + 1, 16, 16, 3), dtype=np.uint8)
    components = terms.episode_components(frames, STEPS)
    np.testing.assert_allclose(components["model"], amp.bonus(frames[1:]).numpy())  # the frame each step reaches
    replay, frame_replay = _filled_replays(terms, np.random.default_rng(0))
    trained = []
    for _ in range(7):
        before = [p.detach().clone() for p in amp.discriminator.parameters()]
        batch, metrics = terms.sample(replay, np.random.default_rng(1), 16, "cpu", frame_replay=frame_replay)
        changed = any(not torch.equal(a, b) for a, b in zip(before, amp.discriminator.parameters()))
        trained.append(changed)
        assert changed == ("reward/amp_loss" in metrics)
        stored = batch["component/model"]  # the rewards stored at episode end make up the n-step return
        assert torch.allclose(metrics["reward/model"] * torch.ones(()),
                              (stored * batch["step_mask"]).sum() / batch["step_mask"].sum())
    assert trained == [False, False, True, False, False, True, False]


def test_amp_per_episode_state_round_trips_exactly(tmp_path):
    def run(terms, replays, n):
        return [terms.sample(*replays[:1], np.random.default_rng(i), 16, "cpu", frame_replay=replays[1])[1]
                for i in range(n)]

    terms = _amp_terms(tmp_path / "a", ("episode", 2, 8))
    replays = _filled_replays(terms, np.random.default_rng(0))
    run(terms, replays, 3)
    terms.save_state(tmp_path / "reward")
    after = run(terms, replays, 4)
    restored = _amp_terms(tmp_path / "b", ("episode", 2, 8))
    restored.load_state(tmp_path / "reward")
    assert run(restored, replays, 4) == after
    for key, value in terms.episode_bonus.model.state_tensors().items():
        assert torch.equal(value, restored.episode_bonus.model.state_tensors()[key]), key
