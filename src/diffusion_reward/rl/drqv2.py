"""DrQ-v2: an actor-critic agent for continuous control from pixels (or from a state vector).

The algorithm (Yarats et al., 2021) as used by Diffusion Reward: a conv encoder trained by the
critic loss only, random-shift augmentation of every observation the critic and actor see,
a deterministic actor whose exploration noise is a clipped normal with a scheduled standard
deviation, twin critics with clipped double-Q n-step targets and a Polyak-averaged target
critic. ``obs_type="state"`` runs the same algorithm on a low-dimensional float state (no
encoder, no augmentation), cheap enough for real runs on a CPU.

Time is counted in *agent steps* (environment steps after action repeat): ``step`` passed to
:meth:`DrQV2Agent.act` and :meth:`DrQV2Agent.update`, ``num_expl_steps`` and
``stddev_schedule_steps`` all use that unit. The loop owns seed frames, action repeat and the
update period (``update_every_steps``); the agent only acts and updates.

A batch is a dict of tensors (any device; moved to the agent's): ``obs`` (uint8 pixels or
float32 state), ``action`` (B, A), ``reward`` (B,) n-step discounted return, ``discount`` (B,)
``gamma**n`` or 0 where the episode terminated, and ``next_obs`` (the observation n steps
later), as produced by :class:`diffusion_reward.rl.replay.ReplayBuffer`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Literal, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_reward.config import option
from diffusion_reward.utils.device import autocast
from diffusion_reward.utils.frames import to_unit_range


@dataclasses.dataclass(frozen=True)
class DrQV2Config:
    """Hyperparameters of DrQ-v2; the defaults are the paper's (Diffusion Reward, DrQ-v2 medium)."""

    obs_type: Literal["pixels", "state"] = option(
        "pixels", "what the agent sees: 'pixels' (uint8 C x H x W frames, conv encoder + augmentation) "
        "or 'state' (a float vector, MLP trunk only)")
    frame_stack: int = option(1, "frames stacked along the channel axis of a pixel observation (3 channels each)")
    num_filters: int = option(32, "channels of every conv layer of the pixel encoder")
    num_conv_layers: int = option(4, "conv layers of the pixel encoder (the first has stride 2)")
    feature_dim: int = option(50, "width of the LayerNorm+tanh trunk that actor and critics put on the encoding")
    hidden_dim: int = option(1024, "width of the hidden layers of the actor and critic MLPs")
    aug_pad: int = option(4, "random-shift augmentation: replicate-pad by this many pixels and crop back "
                             "(0 switches augmentation off)")
    lr: float = option(1e-4, "Adam learning rate of encoder, actor and critic")
    critic_target_tau: float = option(0.01, "Polyak rate of the target critic: target += tau * (online - target)")
    discount: float = option(0.99, "per-step discount gamma (applied by the replay buffer's n-step targets)")
    nstep: int = option(3, "steps summed in the critic's target (the replay buffer builds them)")
    batch_size: int = option(256, "transitions per update (the loop samples them)")
    update_every_steps: int = option(2, "the loop calls update once every this many agent steps")
    num_expl_steps: int = option(2000, "agent steps of uniform-random actions before the actor takes over")
    stddev_init: float = option(1.0, "exploration std at step 0")
    stddev_final: float = option(0.1, "exploration std at the end of the schedule (and after)")
    stddev_schedule_steps: int = option(
        0, "agent steps over which the exploration std decays linearly from stddev_init to stddev_final; "
           "0 = not set yet: derive it from the run length with DrQV2Config.for_run")
    stddev_schedule_fraction: float = option(
        0.3, "when stddev_schedule_steps is 0, for_run(num_train_steps) decays the std over this fraction "
             "of the run (DrQ-v2 decays over about a third of its medium-task runs)")
    stddev_clip: float = option(0.3, "clip of the exploration noise in the actor and critic updates")
    bf16: bool = option(False, "run the networks under bf16 autocast during updates (measure first: "
                               "slower than fp32 on most CPUs)")

    def for_run(self, num_train_steps: int) -> "DrQV2Config":
        """This config with the std schedule fitted to a run of ``num_train_steps`` agent steps.

        An explicit ``stddev_schedule_steps`` is kept; otherwise the std decays over
        ``stddev_schedule_fraction`` of the run, so exploration always reaches its final level
        before the run ends.
        """
        if self.stddev_schedule_steps > 0:
            return self
        steps = max(1, int(round(self.stddev_schedule_fraction * num_train_steps)))
        return dataclasses.replace(self, stddev_schedule_steps=steps)


PRESETS: dict[str, DrQV2Config] = {
    "tiny": DrQV2Config(num_filters=8, num_conv_layers=2, feature_dim=16, hidden_dim=32, batch_size=16,
                        num_expl_steps=10),
    "small": DrQV2Config(hidden_dim=256, batch_size=128),
    "paper": DrQV2Config(),
}


def _orthogonal_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight, gain=nn.init.calculate_gain("relu"))
        nn.init.zeros_(module.bias)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image of a ``(B, C, H, W)`` float batch by a random whole number of pixels.

    The batch is replicate-padded by ``pad`` pixels and each image is cropped back to its size
    at an offset drawn uniformly from ``[0, 2 * pad]`` in each axis. The crop goes through
    bilinear ``grid_sample`` at exact pixel centres (so it is exact) as in DrQ-v2.
    ``pad == 0`` returns the batch unchanged.
    """
    if pad == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    hp, wp = h + 2 * pad, w + 2 * pad
    # Centres of the output's pixels in the padded image's normalised coordinates
    # (align_corners=False: pixel i of n sits at (2 i + 1) / n - 1).
    xs = (2 * torch.arange(w, device=images.device, dtype=images.dtype) + 1) / wp - 1
    ys = (2 * torch.arange(h, device=images.device, dtype=images.dtype) + 1) / hp - 1
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
    shift = torch.randint(0, 2 * pad + 1, (b, 1, 1, 2), device=images.device, generator=generator)
    scale = torch.tensor([2.0 / wp, 2.0 / hp], device=images.device, dtype=images.dtype)
    grid = base.unsqueeze(0) + shift.to(images.dtype) * scale
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class PixelEncoder(nn.Module):
    """uint8-range frames ``(B, C, H, W)`` -> flat conv features."""

    def __init__(self, obs_shape: tuple[int, ...], num_filters: int, num_layers: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(obs_shape[0], num_filters, 3, stride=2), nn.ReLU()]
        for _ in range(num_layers - 1):
            layers += [nn.Conv2d(num_filters, num_filters, 3, stride=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            self.repr_dim = int(self.convs(torch.zeros(1, *obs_shape)).numel())
        self.apply(_orthogonal_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.convs(obs).flatten(1)


class StateEncoder(nn.Module):
    """The identity on a float state vector; the trunks of actor and critic do the work."""

    def __init__(self, obs_shape: tuple[int, ...]):
        super().__init__()
        self.repr_dim = int(np.prod(obs_shape))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.flatten(1)


def _trunk(repr_dim: int, feature_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


class ClippedNormal:
    """A normal around the actor's mean whose samples have clipped noise and stay inside (-1, 1).

    DrQ-v2's "truncated normal": the noise is clipped to ``[-clip, clip]`` and the action to
    ``[-1 + eps, 1 - eps]``, with the gradient of the mean passed straight through both clips.
    ``log_prob`` and ``entropy`` are those of the untruncated normal, as in DrQ-v2.
    """

    eps = 1e-6

    def __init__(self, mean: torch.Tensor, std: float):
        self.mean = mean
        self.std = torch.full_like(mean, std)

    def sample(self, clip: float | None, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, device=self.mean.device, dtype=self.mean.dtype,
                            generator=generator) * self.std
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        action = self.mean + noise
        clamped = action.clamp(-1 + self.eps, 1 - self.eps)
        return action - action.detach() + clamped.detach()

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        var = self.std ** 2
        return -((value - self.mean) ** 2) / (2 * var) - self.std.log() - 0.5 * math.log(2 * math.pi)

    def entropy(self) -> torch.Tensor:
        return 0.5 + 0.5 * math.log(2 * math.pi) + self.std.log()


class Actor(nn.Module):
    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int):
        super().__init__()
        self.trunk = _trunk(repr_dim, feature_dim)
        self.policy = _mlp(feature_dim, hidden_dim, action_dim)
        self.apply(_orthogonal_init)

    def forward(self, h: torch.Tensor, std: float) -> ClippedNormal:
        return ClippedNormal(torch.tanh(self.policy(self.trunk(h)).float()), std)


class Critic(nn.Module):
    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int):
        super().__init__()
        self.trunk = _trunk(repr_dim, feature_dim)
        self.q1 = _mlp(feature_dim + action_dim, hidden_dim, 1)
        self.q2 = _mlp(feature_dim + action_dim, hidden_dim, 1)
        self.apply(_orthogonal_init)

    def forward(self, h: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.trunk(h)
        x = torch.cat([x, action.to(x.dtype)], dim=-1)
        return self.q1(x).float().squeeze(-1), self.q2(x).float().squeeze(-1)


class DrQV2Agent:
    """DrQ-v2 actor-critic: ``act`` for the environment loop, ``update`` for one gradient step.

    ``obs_shape`` is one observation's shape: ``(3 * frame_stack, H, W)`` for pixels, ``(S,)``
    for a state vector. Randomness (exploration, augmentation) comes from the agent's own
    generator, seeded from PyTorch's global generator at construction, so an agent built after
    ``torch.manual_seed(s)`` behaves identically every time; its state is part of
    :meth:`state_dict`, so a resumed agent continues the same random stream.
    """

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int, cfg: DrQV2Config,
                 device: str | torch.device = "cpu"):
        obs_shape = tuple(int(d) for d in obs_shape)
        if cfg.obs_type == "pixels":
            if len(obs_shape) != 3 or obs_shape[0] != 3 * cfg.frame_stack:
                raise ValueError(f"pixel observations must have shape (3 * frame_stack = {3 * cfg.frame_stack}, H, W), "
                                 f"got {obs_shape}")
        elif cfg.obs_type == "state":
            if len(obs_shape) != 1:
                raise ValueError(f"state observations must be a vector (S,), got shape {obs_shape}")
        else:
            raise ValueError(f"obs_type must be 'pixels' or 'state', got {cfg.obs_type!r}")
        if cfg.stddev_schedule_steps <= 0:
            raise ValueError("stddev_schedule_steps is not set: build the config with "
                             "cfg.for_run(num_train_steps) or give it explicitly")
        if action_dim < 1:
            raise ValueError(f"action_dim must be positive, got {action_dim}")
        self.cfg = cfg
        self.obs_shape = obs_shape
        self.action_dim = int(action_dim)
        self.device = torch.device(device)
        self.pixels = cfg.obs_type == "pixels"

        seed = int(torch.randint(0, 2**62, ()).item())
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

        self.encoder = (PixelEncoder(obs_shape, cfg.num_filters, cfg.num_conv_layers) if self.pixels
                        else StateEncoder(obs_shape)).to(self.device)
        repr_dim = self.encoder.repr_dim
        self.actor = Actor(repr_dim, self.action_dim, cfg.feature_dim, cfg.hidden_dim).to(self.device)
        self.critic = Critic(repr_dim, self.action_dim, cfg.feature_dim, cfg.hidden_dim).to(self.device)
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_target.requires_grad_(False)

        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "actor": torch.optim.Adam(self.actor.parameters(), lr=cfg.lr),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=cfg.lr),
        }
        if self.pixels:
            self.optimizers["encoder"] = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr)

    # ------------------------------------------------------------------ acting
    def stddev(self, step: int) -> float:
        """Exploration std at agent step ``step``: linear from stddev_init to stddev_final, then flat."""
        frac = min(max(step, 0) / self.cfg.stddev_schedule_steps, 1.0)
        return self.cfg.stddev_init + frac * (self.cfg.stddev_final - self.cfg.stddev_init)

    def _prepare(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.to(self.device, non_blocking=True)
        if self.pixels:
            return to_unit_range(obs)
        return obs.float()

    @torch.no_grad()
    def act(self, obs: np.ndarray, step: int, eval_mode: bool) -> np.ndarray:
        """Action(s) in ``[-1, 1]`` (float32) for one observation, or a batch of them.

        Evaluation returns the actor's mean; training adds (unclipped) noise with the scheduled
        std, or, during the first ``num_expl_steps`` agent steps, acts uniformly at random.
        """
        obs_t = torch.as_tensor(np.asarray(obs))
        single = obs_t.dim() == len(self.obs_shape)
        if single:
            obs_t = obs_t.unsqueeze(0)
        if tuple(obs_t.shape[1:]) != self.obs_shape:
            raise ValueError(f"observation shape {tuple(obs_t.shape[-len(self.obs_shape):])} does not match "
                             f"the agent's {self.obs_shape}")
        batch = obs_t.shape[0]
        if not eval_mode and step < self.cfg.num_expl_steps:
            action = torch.rand((batch, self.action_dim), device=self.device, generator=self.generator) * 2 - 1
        else:
            dist = self.actor(self.encoder(self._prepare(obs_t)), self.stddev(step))
            action = dist.mean if eval_mode else dist.sample(clip=None, generator=self.generator)
        action = action.clamp(-1.0, 1.0).float().cpu().numpy()
        return action[0] if single else action

    # ---------------------------------------------------------------- learning
    def _augment(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.pixels:
            return obs
        return random_shift(obs, self.cfg.aug_pad, self.generator)

    def update(self, batch: Mapping[str, torch.Tensor], step: int) -> dict[str, float]:
        """One gradient step of critic (and encoder), then actor, then the target critic.

        Returns metrics under ``train/``: critic loss, Q estimates and target, actor loss,
        log-prob, entropy and std, and the batch's mean n-step reward.
        """
        cfg = self.cfg
        obs = self._augment(self._prepare(batch["obs"]))
        next_obs = self._augment(self._prepare(batch["next_obs"]))
        action = batch["action"].to(self.device).float()
        reward = batch["reward"].to(self.device).float().reshape(-1)
        discount = batch["discount"].to(self.device).float().reshape(-1)
        std = self.stddev(step)
        amp = self._autocast

        with amp():
            h = self.encoder(obs)
        with torch.no_grad(), amp():
            h_next = self.encoder(next_obs)
            next_action = self.actor(h_next, std).sample(clip=cfg.stddev_clip, generator=self.generator)
            target_q1, target_q2 = self.critic_target(h_next, next_action)
        target_q = reward + discount * torch.min(target_q1, target_q2)
        with amp():
            q1, q2 = self.critic(h, action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self._step(critic_loss, ["critic", "encoder"])

        # The actor's loss needs gradients through the critic to the action, not for the
        # critic's weights: freezing them skips that part of the backward pass.
        self.critic.requires_grad_(False)
        try:
            with amp():
                dist = self.actor(h.detach(), std)
                policy_action = dist.sample(clip=cfg.stddev_clip, generator=self.generator)
                pq1, pq2 = self.critic(h.detach(), policy_action)
            actor_loss = -torch.min(pq1, pq2).mean()
            self._step(actor_loss, ["actor"])
        finally:
            self.critic.requires_grad_(True)

        self._soft_update_target()
        with torch.no_grad():
            log_prob = dist.log_prob(policy_action).sum(-1).mean()
            entropy = dist.entropy().sum(-1).mean()
        return {
            "train/critic_loss": critic_loss.item(),
            "train/critic_q1": q1.mean().item(),
            "train/critic_q2": q2.mean().item(),
            "train/critic_target_q": target_q.mean().item(),
            "train/actor_loss": actor_loss.item(),
            "train/actor_logprob": log_prob.item(),
            "train/actor_entropy": entropy.item(),
            "train/actor_std": std,
            "train/batch_reward": reward.mean().item(),
        }

    def _autocast(self):
        return autocast(self.device, self.cfg.bf16)

    def _step(self, loss: torch.Tensor, names: list[str]) -> None:
        opts = [self.optimizers[n] for n in names if n in self.optimizers]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()

    @torch.no_grad()
    def _soft_update_target(self) -> None:
        for target, online in zip(self.critic_target.parameters(), self.critic.parameters()):
            target.lerp_(online, self.cfg.critic_target_tau)

    # ------------------------------------------------------------- persistence
    def _modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "actor": self.actor, "critic": self.critic,
                "critic_target": self.critic_target}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume: weights, target critic, Adam moments and the agent's RNG.

        A flat ``{name: tensor}`` dict (no Python objects), so it saves with
        :func:`diffusion_reward.utils.checkpoint.save_tensors` or ``torch.save`` and loads with
        safetensors or ``torch.load(..., weights_only=True)``.
        """
        state: dict[str, torch.Tensor] = {}
        for name, module in self._modules().items():
            for key, value in module.state_dict().items():
                state[f"{name}.{key}"] = value.detach().clone()
        for name, opt in self.optimizers.items():
            for index, slots in opt.state_dict()["state"].items():
                for slot, value in slots.items():
                    state[f"optim.{name}.{index}.{slot}"] = torch.as_tensor(value).detach().clone()
        state["rng.generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` output; missing or unexpected keys are an error naming them."""
        expected = set(self.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            # An agent that has not updated yet has no optimizer moments: loading a trained
            # agent's state into a fresh one is the normal resume path, so optimizer keys are
            # allowed to be new; anything else means a different architecture.
            missing = [k for k in missing if not k.startswith("optim.")]
            unexpected = [k for k in unexpected if not k.startswith("optim.")]
            if missing or unexpected:
                raise ValueError(f"agent state does not match this agent: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]} (a different config or observation shape?)")
        for name, module in self._modules().items():
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                   strict=True)
        for name, opt in self.optimizers.items():
            prefix = f"optim.{name}."
            slots: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in state.items():
                if key.startswith(prefix):
                    index, slot = key[len(prefix):].split(".", 1)
                    slots.setdefault(int(index), {})[slot] = value.clone()
            opt.load_state_dict({"state": slots, "param_groups": opt.state_dict()["param_groups"]})
        self.generator.set_state(state["rng.generator"].to(torch.uint8).cpu())
