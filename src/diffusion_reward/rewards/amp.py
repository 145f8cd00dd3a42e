"""Adversarial Motion Priors (AMP) baseline: a discriminator of expert frames vs agent frames.

A small conv net ``D`` scores single frames. It is trained online, during RL, with the
least-squares GAN targets of AMP (Peng et al. 2021): ``D -> +1`` on expert frames and ``D -> -1``
on the agent's frames, plus a gradient penalty on expert samples::

    loss = E_expert[(D(x) - 1)^2] + E_agent[(D(x) + 1)^2] + gp_weight / 2 * E_expert[|grad_x D(x)|^2]

(``x`` = frames scaled to ``[-1, 1]``). The reward of a frame is ``max(0, 1 - 0.25 (D(x) - 1)^2)``:
1 where the frame looks fully expert-like (``D = 1``), 0 from ``D <= -1``.

Expert frames come from an episode dataset (:meth:`AMPReward.from_dataset`, by default every
frame of the ``train``-split episodes whose policy is ``expert`` or ``video``) and are held in
memory for sampling; :meth:`AMPReward.update` draws as many expert frames as the agent batch has.
In the paper's RL runs the AMP reward is added to the sparse reward with no RND bonus (see
:mod:`diffusion_reward.rewards.combine`).

Saving keeps the discriminator and the config, **not** the expert frames (they are data, and
large): a loaded model scores frames at once, but to keep training it call
:meth:`AMPReward.attach_expert` with the dataset first. The optimizer state is not saved either.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from diffusion_reward.config import from_dict, option, to_dict
from diffusion_reward.data.episodes import EXPERT_POLICIES
from diffusion_reward.errors import UserError
from diffusion_reward.rewards.base import (OnlineRewardModel, check_frames, frames_to_model_input,
                                           register_reward)
from diffusion_reward.rewards.rnd import conv_features


@dataclasses.dataclass(frozen=True)
class AMPConfig:
    """Discriminator size and training of the AMP baseline."""

    image_size: int = option(64, "side of the square frames the discriminator reads")
    channels: tuple[int, ...] = option((32, 64, 128), "output channels of each stride-2 3x3 conv layer")
    hidden: int = option(256, "width of the hidden layer before the score")
    lr: float = option(1e-4, "Adam learning rate of the discriminator")
    gp_weight: float = option(10.0, "gradient-penalty weight w_gp (the loss adds w_gp / 2 * E|grad D|^2 on expert frames)")
    seed: int = option(0, "seed of the initialisation and of expert-frame sampling")


PRESETS: dict[str, AMPConfig] = {
    "tiny": AMPConfig(image_size=16, channels=(8, 16), hidden=32),
    "small": AMPConfig(channels=(16, 32, 64), hidden=128),
    "paper": AMPConfig(),
}


def amp_reward_from_score(d: torch.Tensor) -> torch.Tensor:
    """AMP's reward of a discriminator score: ``max(0, 1 - 0.25 (d - 1)^2)``."""
    return torch.clamp(1.0 - 0.25 * (d - 1.0) ** 2, min=0.0)


@register_reward("amp")
class AMPReward(OnlineRewardModel):
    """Single-frame LSGAN discriminator reward; see the module docstring."""

    def __init__(self, config: AMPConfig | None = None, device: str | torch.device = "auto"):
        super().__init__(device)
        self.config = config or AMPConfig()
        cfg = self.config
        if cfg.image_size < 1 or not cfg.channels or cfg.hidden < 1 or cfg.gp_weight < 0:
            raise UserError(f"AMPConfig: need image_size >= 1, some channels, hidden >= 1, gp_weight >= 0; got {cfg}")
        self.image_size = cfg.image_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.discriminator = nn.Sequential(conv_features(cfg.channels, cfg.hidden, cfg.image_size),
                                               nn.LeakyReLU(0.2), nn.Linear(cfg.hidden, 1))
        self.discriminator.to(self.device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr)
        self.expert_frames: torch.Tensor | None = None  # uint8 (N, 3, S, S) on self.device
        self._sampler = torch.Generator().manual_seed(cfg.seed)

    # ---- construction from expert data ------------------------------------------------------

    @classmethod
    def from_dataset(cls, dataset: Any, config: AMPConfig | None = None, *, split: str = "train",
                     policy: str | Iterable[str] | None = EXPERT_POLICIES, task: str | Iterable[str] | None = None,
                     resize: bool = False, device: str | torch.device = "auto") -> "AMPReward":
        """A fresh AMP reward with the expert frames of ``dataset`` attached (see :meth:`attach_expert`)."""
        model = cls(config, device=device)
        model.attach_expert(dataset, split=split, policy=policy, task=task, resize=resize)
        return model

    def attach_expert(self, source: Any, *, split: str = "train", policy: str | Iterable[str] | None = EXPERT_POLICIES,
                      task: str | Iterable[str] | None = None, resize: bool = False) -> int:
        """Hold the expert frames that :meth:`update` samples; returns how many there are.

        ``source``: a dataset path or :class:`~diffusion_reward.data.episodes.EpisodeDataset`
        (filtered by ``split``, ``policy`` and ``task``; ``None`` means any), a uint8
        ``(N, H, W, 3)`` array of frames, or a list of episodes / frame arrays. Frames must be
        ``image_size`` square unless ``resize``.
        """
        from diffusion_reward.data.episodes import EpisodeDataset, load_dataset

        if isinstance(source, (str, os.PathLike)):
            source = load_dataset(source)
        if isinstance(source, EpisodeDataset):
            picked = source.select(task=task, policy=policy, split=split)
            if len(picked) == 0:
                roots = ", ".join(str(r) for r in source.roots)
                raise UserError(f"{roots}: no episodes with split={split!r}, policy={policy!r}, task={task!r} "
                                f"to use as AMP expert frames (the dataset has policies {source.policies}, "
                                f"tasks {source.tasks})")
            clips: Sequence[Any] = list(picked)
            self.cameras = picked.cameras or self.cameras  # the expert frames now define the expert look
        elif isinstance(source, (np.ndarray, torch.Tensor)):
            clips = [source]
        else:
            clips = list(source)
        if not clips:
            raise UserError("AMP expert frames: none given")
        arrays = [check_frames(getattr(c, "frames", c), self.image_size, resize, what=f"expert episode {i}")
                  for i, c in enumerate(clips)]
        frames = torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()
        self.expert_frames = frames.to(self.device)
        return len(frames)

    # ---- training and reward ------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        return to_dict(self.config)

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device = "auto") -> "AMPReward":
        return cls(from_dict(AMPConfig, config), device=device)

    def torch_modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Discriminator score ``D(x)``, ``(B,)``, of model-input frames in ``[-1, 1]``."""
        return self.discriminator(x).squeeze(1)

    def sample_expert(self, n: int) -> torch.Tensor:
        """``n`` expert frames drawn uniformly with replacement, uint8 ``(n, 3, S, S)``."""
        if self.expert_frames is None:
            raise UserError("AMP update: no expert frames attached; call attach_expert(dataset) "
                            "(a loaded AMP model does not carry its expert data)")
        idx = torch.randint(len(self.expert_frames), (n,), generator=self._sampler)
        return self.expert_frames[idx.to(self.expert_frames.device)]

    def update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One discriminator step: agent frames ``batch["next_obs"]`` (uint8, ``(B, 3, H, W)`` or
        ``(B, H, W, 3)``) against ``B`` sampled expert frames. Returns ``reward/amp_loss`` (total)
        and its parts ``reward/amp_expert_loss``, ``reward/amp_agent_loss``,
        ``reward/amp_grad_penalty``, plus the mean scores ``reward/amp_d_expert`` and
        ``reward/amp_d_agent``."""
        if "next_obs" not in batch:
            raise UserError(f"AMP update: batch needs 'next_obs', has keys {sorted(batch)}")
        agent = frames_to_model_input(batch["next_obs"], self.image_size, self.device, what="AMP update next_obs")
        expert = frames_to_model_input(self.sample_expert(len(agent)), self.image_size, self.device)
        expert.requires_grad_(True)
        d_expert, d_agent = self.score(expert), self.score(agent)
        expert_loss = (d_expert - 1.0).pow(2).mean()
        agent_loss = (d_agent + 1.0).pow(2).mean()
        (grad,) = torch.autograd.grad(d_expert.sum(), expert, create_graph=True)
        grad_penalty = grad.pow(2).flatten(1).sum(1).mean()
        loss = expert_loss + agent_loss + 0.5 * self.config.gp_weight * grad_penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"reward/amp_loss": float(loss.detach()), "reward/amp_expert_loss": float(expert_loss.detach()),
                "reward/amp_agent_loss": float(agent_loss.detach()),
                "reward/amp_grad_penalty": float(grad_penalty.detach()),
                "reward/amp_d_expert": float(d_expert.detach().mean()),
                "reward/amp_d_agent": float(d_agent.detach().mean())}

    @torch.no_grad()
    def bonus(self, next_obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """AMP reward ``max(0, 1 - 0.25 (D - 1)^2)`` per frame, float ``(B,)`` on the model's device."""
        x = frames_to_model_input(next_obs, self.image_size, self.device, what="AMP next_obs")
        return amp_reward_from_score(self.score(x))
