"""DrQ-v2: updates move every network, the target follows by tau, acting is seeded, state round-trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from diffusion_reward.rl.drqv2 import PRESETS, DrQV2Agent, DrQV2Config, random_shift
from diffusion_reward.utils.checkpoint import load_tensors, save_tensors
from diffusion_reward.utils.device import torch_threads

ACTION_DIM = 3
TINY = dataclasses.replace(PRESETS["tiny"], stddev_schedule_steps=100)
SHAPES = {"pixels": (3, 16, 16), "state": (5,)}


def make_agent(obs_type: str, seed: int = 0, **overrides) -> DrQV2Agent:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(TINY, obs_type=obs_type, **overrides)
    return DrQV2Agent(SHAPES[obs_type], ACTION_DIM, cfg, "cpu")


def make_obs(obs_type: str, batch: int, rng: np.random.Generator) -> np.ndarray:
    if obs_type == "pixels":
        return rng.integers(0, 256, (batch, *SHAPES["pixels"]), dtype=np.uint8)
    return rng.normal(size=(batch, *SHAPES["state"])).astype(np.float32)


def make_batch(obs_type: str, batch: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {
        "obs": torch.from_numpy(make_obs(obs_type, batch, rng)),
        "next_obs": torch.from_numpy(make_obs(obs_type, batch, rng)),
        "action": torch.from_numpy(rng.uniform(-1, 1, (batch, ACTION_DIM)).astype(np.float32)),
        "reward": torch.from_numpy(rng.normal(size=batch).astype(np.float32)),
        "discount": torch.full((batch,), 0.99 ** 3),
    }


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("obs_type,bf16", [("pixels", False), ("state", False), ("pixels", True)])
def test_update_changes_every_network_and_reports_finite_metrics(obs_type, bf16):
    agent = make_agent(obs_type, bf16=bf16)
    before = {name: snapshot(m) for name, m in agent._modules().items()}
    metrics = agent.update(make_batch(obs_type), step=50)
    expected = {"train/critic_loss", "train/critic_q1", "train/actor_loss", "train/actor_entropy",
                "train/actor_std", "train/batch_reward"}
    assert expected <= metrics.keys()
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    assert metrics["train/actor_std"] == pytest.approx(1.0 - 0.9 * 0.5)
    names = ["actor", "critic", "critic_target"] + (["encoder"] if obs_type == "pixels" else [])
    for name in names:
        after = agent._modules()[name].state_dict()
        for key, value in before[name].items():
            assert not torch.equal(value, after[key]), f"{name}.{key} did not change"
    if obs_type == "state":
        assert not list(agent.encoder.parameters())


def test_target_critic_moves_by_tau_towards_the_online_critic():
    agent = make_agent("pixels", critic_target_tau=0.25)
    target_before = snapshot(agent.critic_target)
    agent.update(make_batch("pixels"), step=0)
    online, target = agent.critic.state_dict(), agent.critic_target.state_dict()
    for key, old in target_before.items():
        assert torch.allclose(target[key], 0.75 * old + 0.25 * online[key], atol=1e-6)


def test_critic_target_bootstraps_with_the_batch_discount():
    batch = make_batch("state")
    terminal = make_agent("state").update({**batch, "discount": torch.zeros(8)}, step=50)
    assert terminal["train/critic_target_q"] == pytest.approx(terminal["train/batch_reward"], abs=1e-6)
    agent = make_agent("state", stddev_clip=0.0)  # no target noise: the next action is the actor's mean
    with torch.no_grad():
        h_next = agent.encoder(batch["next_obs"])
        q_next = torch.min(*agent.critic_target(h_next, agent.actor(h_next, 1.0).mean))
    bootstrapped = agent.update({**batch, "discount": torch.full((8,), 0.5)}, step=50)
    expected = (batch["reward"] + 0.5 * q_next).mean().item()
    assert bootstrapped["train/critic_target_q"] == pytest.approx(expected, abs=1e-5)
    assert bootstrapped["train/critic_target_q"] != pytest.approx(terminal["train/critic_target_q"], abs=1e-4)


def test_critic_and_actor_learn_a_one_step_problem():
    # Reward w . a with no bootstrapping: the critic must rank actions by it and the greedy
    # action must go to sign(w) in every dimension (a sign error anywhere sends it the other way).
    w = torch.tensor([1.0, -1.0, 0.5])
    rng = np.random.default_rng(0)
    with torch_threads(1):  # tiny networks: thread hand-offs would cost more than the maths
        agent = make_agent("state", lr=1e-3)
        obs = torch.from_numpy(make_obs("state", 64, rng))
        for step in range(100):
            action = torch.from_numpy(rng.uniform(-1, 1, (64, ACTION_DIM)).astype(np.float32))
            agent.update({"obs": obs, "next_obs": obs, "action": action, "reward": action @ w,
                          "discount": torch.zeros(64)}, step)
        greedy = agent.act(obs.numpy(), step=1000, eval_mode=True)
        action = torch.from_numpy(rng.uniform(-1, 1, (64, ACTION_DIM)).astype(np.float32))
        with torch.no_grad():
            q = torch.min(*agent.critic(agent.encoder(obs), action))
    assert np.all(greedy * np.sign(w.numpy()) > 0.5)
    assert np.corrcoef(q.numpy(), (action @ w).numpy())[0, 1] > 0.9


def test_acting_is_seeded_bounded_and_explores_uniformly_first():
    rng = np.random.default_rng(0)
    obs = make_obs("pixels", 1, rng)[0]
    a, b = make_agent("pixels", seed=3), make_agent("pixels", seed=3)
    for step in [0, 5, 20, 60]:  # num_expl_steps=10 in the tiny preset
        x, y = a.act(obs, step, eval_mode=False), b.act(obs, step, eval_mode=False)
        assert x.dtype == np.float32 and x.shape == (ACTION_DIM,)
        assert np.array_equal(x, y) and np.all(np.abs(x) <= 1)
    assert not np.array_equal(make_agent("pixels", seed=4).act(obs, 60, False), a.act(obs, 60, False))
    assert np.array_equal(a.act(obs, 60, eval_mode=True), a.act(obs, 60, eval_mode=True))
    # During exploration the action ignores the actor: uniform over [-1, 1].
    explore = a.act(make_obs("pixels", 4000, rng), step=0, eval_mode=False)
    assert explore.shape == (4000, ACTION_DIM)
    assert abs(explore.mean()) < 0.05 and explore.min() < -0.95 and explore.max() > 0.95


def test_updates_are_deterministic_given_the_seed():
    metrics = [make_agent("pixels", seed=1).update(make_batch("pixels"), step=30) for _ in range(2)]
    assert metrics[0] == metrics[1]


@pytest.mark.parametrize("via", ["safetensors", "torch"])
def test_state_dict_round_trip_resumes_identically(tmp_path, via):
    agent = make_agent("pixels", seed=5)
    agent.update(make_batch("pixels", seed=1), step=40)
    path = tmp_path / "agent.bin"
    if via == "safetensors":
        save_tensors(path, agent.state_dict())
        state = load_tensors(path)
    else:
        torch.save(agent.state_dict(), path)
        state = torch.load(path, weights_only=True)
    resumed = make_agent("pixels", seed=99)
    resumed.load_state_dict(state)
    obs = make_obs("pixels", 1, np.random.default_rng(2))[0]
    for step in [3, 50]:
        assert np.array_equal(agent.act(obs, step, False), resumed.act(obs, step, False))
    assert np.array_equal(agent.act(obs, 50, True), resumed.act(obs, 50, True))
    # The optimizer moments and the RNG came along: the next update is the same.
    batch = make_batch("pixels", seed=3)
    assert agent.update(batch, step=41) == resumed.update(batch, step=41)

    other = make_agent("state")
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(state)


def test_std_schedule_is_linear_then_flat_and_fitted_to_the_run():
    cfg = DrQV2Config(obs_type="state").for_run(num_train_steps=1000)
    assert cfg.stddev_schedule_steps == 300
    agent = DrQV2Agent((4,), 2, dataclasses.replace(cfg, hidden_dim=8))
    assert [agent.stddev(s) for s in (0, 150, 300, 10_000)] == pytest.approx([1.0, 0.55, 0.1, 0.1])
    assert DrQV2Config(stddev_schedule_steps=7).for_run(1000).stddev_schedule_steps == 7
    with pytest.raises(ValueError, match="for_run"):
        DrQV2Agent((4,), 2, DrQV2Config(obs_type="state"))


def test_observation_shape_is_checked():
    with pytest.raises(ValueError, match="frame_stack"):
        DrQV2Agent((3, 16, 16), 2, dataclasses.replace(TINY, frame_stack=2))
    stacked = DrQV2Agent((9, 16, 16), 2, dataclasses.replace(TINY, frame_stack=3))
    assert stacked.act(np.zeros((9, 16, 16), np.uint8), 50, True).shape == (2,)
    with pytest.raises(ValueError, match="does not match"):
        stacked.act(np.zeros((3, 16, 16), np.uint8), 50, True)


def test_random_shift_is_an_integer_crop_of_the_padded_image():
    images = torch.rand(16, 3, 12, 10)
    assert torch.equal(random_shift(images, 0), images)
    generator = torch.Generator().manual_seed(0)
    shifted = random_shift(images, 2, generator)
    assert shifted.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    offsets = set()
    for i in range(len(images)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.allclose(shifted[i], padded[i, :, dy:dy + 12, dx:dx + 10], atol=1e-5)]
        assert len(matches) == 1, f"image {i} is not a whole-pixel crop"
        offsets.add(matches[0])
    assert len(offsets) > 1
