"""Random Network Distillation on low-dimensional states: the RND bonus of state-mode RL runs.

In ``--obs state`` runs the agent's replay holds simulator states, not frames. The frame RND of
:mod:`diffusion_reward.rewards.rnd` would need a frame rendered for every step and every sampled
batch; this module computes the same kind of novelty bonus from the state vector instead, so a
state-mode ``rnd`` or ``sparse`` run renders nothing at all. It mirrors the frame RND: a fixed
random *target* MLP, a *predictor* MLP trained on the states the agent reaches, states normalised
by a running mean and std and clipped, and the bonus ``error / running std of errors``.

It is not a :class:`~diffusion_reward.rewards.base.RewardModel` (those score frames); the RL loop
uses it through the same two calls as the frame bonuses: ``bonus(next_obs)`` on every sampled
batch and ``update(batch)`` to train on the batch's ``next_obs``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from diffusion_reward.config import option
from diffusion_reward.errors import UserError
from diffusion_reward.rewards.rnd import RunningMeanStd


@dataclasses.dataclass(frozen=True)
class StateRNDConfig:
    """Sizes and optimisation of the state RND bonus."""

    hidden_dim: int = option(256, "width of the hidden layers of target and predictor")
    feature_dim: int = option(64, "size of the target's random feature vector")
    lr: float = option(1e-4, "Adam learning rate of the predictor")
    obs_clip: float = option(5.0, "clip normalised states to [-obs_clip, obs_clip]")
    eps: float = option(1e-8, "added to running variances before dividing")
    seed: int = option(0, "seed of the target and predictor initialisation")


PRESETS: dict[str, StateRNDConfig] = {
    "tiny": StateRNDConfig(hidden_dim=32, feature_dim=16),
    "small": StateRNDConfig(hidden_dim=128, feature_dim=32),
    "paper": StateRNDConfig(),
}


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                         nn.LeakyReLU(0.2), nn.Linear(hidden, out_dim))


class StateRND:
    """RND bonus of float state vectors ``(B, S)``; see the module docstring."""

    kind = "state-rnd"
    is_online = True

    def __init__(self, state_dim: int, config: StateRNDConfig | None = None, device: str | torch.device = "cpu"):
        self.config = config or StateRNDConfig()
        cfg = self.config
        if state_dim < 1 or cfg.hidden_dim < 1 or cfg.feature_dim < 1:
            raise UserError(f"StateRND: need state_dim, hidden_dim and feature_dim >= 1, got {state_dim}, {cfg}")
        self.state_dim = int(state_dim)
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.target = _mlp(state_dim, cfg.hidden_dim, cfg.feature_dim)
            torch.manual_seed(cfg.seed + 1)
            self.predictor = _mlp(state_dim, cfg.hidden_dim, cfg.feature_dim)
        self.target.requires_grad_(False)
        self.obs_rms = RunningMeanStd((state_dim,))
        self.err_rms = RunningMeanStd(())
        for module in self.torch_modules().values():
            module.to(self.device)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=cfg.lr)

    def torch_modules(self) -> dict[str, nn.Module]:
        return {"target": self.target, "predictor": self.predictor, "obs_rms": self.obs_rms, "err_rms": self.err_rms}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{key}": value for name, module in self.torch_modules().items()
                for key, value in module.state_dict().items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor], source: str = "weights") -> None:
        expected = set(self.state_tensors())
        if set(tensors) != expected:
            raise UserError(f"{source}: does not match a state RND of {self.state_dim} inputs "
                            f"(missing {sorted(expected - set(tensors))[:5]}, "
                            f"unexpected {sorted(set(tensors) - expected)[:5]})")
        for name, module in self.torch_modules().items():
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})

    def _input(self, states: Any, what: str) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(states) if not isinstance(states, torch.Tensor) else states)
        if x.ndim != 2 or x.shape[1] != self.state_dim:
            raise UserError(f"{what}: expected states of shape (B, {self.state_dim}), got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        mean = self.obs_rms.mean.to(x.dtype)
        std = self.obs_rms.std(self.config.eps).to(x.dtype)
        return ((x - mean) / std).clamp(-self.config.obs_clip, self.config.obs_clip)

    def _errors(self, x: torch.Tensor) -> torch.Tensor:
        return (self.predictor(x) - self.target(x)).pow(2).mean(dim=1)

    def update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One Adam step of the predictor on ``batch["next_obs"]`` after updating the state statistics
        with it; then the error statistics. Returns ``reward/rnd_loss`` and ``reward/rnd_error_std``."""
        if "next_obs" not in batch:
            raise UserError(f"state RND update: batch needs 'next_obs', has keys {sorted(batch)}")
        raw = torch.as_tensor(batch["next_obs"]).to(self.device, torch.float32)
        if raw.ndim == 2 and raw.shape[1] == self.state_dim:
            self.obs_rms.update(raw)
        errors = self._errors(self._input(raw, "state RND update next_obs"))
        loss = errors.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.err_rms.update(errors.detach())
        return {"reward/rnd_loss": float(loss.detach()),
                "reward/rnd_error_std": float(self.err_rms.std(self.config.eps))}

    @torch.no_grad()
    def bonus(self, next_obs: Any) -> torch.Tensor:
        """``error / running std of errors`` per state, float ``(B,)``; changes no statistic."""
        errors = self._errors(self._input(next_obs, "state RND next_obs"))
        return errors / self.err_rms.std(self.config.eps).to(errors.dtype)
