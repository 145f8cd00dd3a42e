"""Random Network Distillation (RND): a novelty bonus for frames the agent has rarely seen.

A *target* conv net with fixed random weights maps a frame to a feature vector; a *predictor*
of the same architecture is trained to reproduce those features on the frames the agent visits.
On familiar frames the predictor is accurate, on novel ones it is not, so its squared error is
an exploration bonus (Burda et al. 2018). As in the paper's reference, the RL loop computes the
bonus from the **next observation of every sampled replay batch** and trains the predictor on
the same batch (:meth:`RNDReward.update`).

Scales, all tracked online during :meth:`~RNDReward.update` and saved with the model:

- observations are normalised per pixel by a running mean and std (then clipped to
  ``[-obs_clip, obs_clip]``), as RND does, so that the random target sees centred inputs;
- the reward is ``error / std(errors)``: the predictor's mean squared feature error divided by
  a running standard deviation of the errors seen in training batches, which keeps the bonus on
  a stable scale while the errors shrink. Before the first update both statistics are neutral
  (mean 0, std 1), so the bonus is the raw error of frames scaled to ``[-1, 1]``.

The predictor's optimizer (Adam, ``lr`` 1e-4 by default) is not part of the artefact: after
:meth:`~diffusion_reward.rewards.base.RewardModel.from_pretrained`, further updates start with
fresh Adam moments.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from diffusion_reward.config import from_dict, option, to_dict
from diffusion_reward.errors import UserError
from diffusion_reward.rewards.base import OnlineRewardModel, frames_to_model_input, register_reward


@dataclasses.dataclass(frozen=True)
class RNDConfig:
    """Sizes and optimisation of the RND bonus."""

    image_size: int = option(64, "side of the square frames the networks read")
    channels: tuple[int, ...] = option((32, 64, 64), "output channels of each stride-2 3x3 conv layer")
    feature_dim: int = option(128, "size of the target's random feature vector")
    lr: float = option(1e-4, "Adam learning rate of the predictor")
    normalize_obs: bool = option(True, "normalise frames per pixel by a running mean/std before the networks")
    obs_clip: float = option(5.0, "clip normalised frames to [-obs_clip, obs_clip]")
    eps: float = option(1e-8, "added to running variances before dividing")
    seed: int = option(0, "seed of the target and predictor initialisation")


PRESETS: dict[str, RNDConfig] = {
    "tiny": RNDConfig(image_size=16, channels=(8, 16), feature_dim=32),
    "small": RNDConfig(channels=(16, 32, 32), feature_dim=64),
    "paper": RNDConfig(),
}


class RunningMeanStd(nn.Module):
    """Running mean and variance of a stream of batches (parallel Welford update), as buffers."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        n = x.shape[0]
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.count.copy_(total)

    def std(self, eps: float) -> torch.Tensor:
        return torch.sqrt(self.var + eps)


def conv_features(channels: tuple[int, ...], out_dim: int, image_size: int) -> nn.Sequential:
    """Stride-2 3x3 convs with LeakyReLU, then a linear map of the flattened maps to ``out_dim``."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c_in = c
    side = image_size
    for _ in channels:
        side = (side + 1) // 2
    layers += [nn.Flatten(), nn.Linear(c_in * side * side, out_dim)]
    return nn.Sequential(*layers)


@register_reward("rnd")
class RNDReward(OnlineRewardModel):
    """RND novelty bonus on single frames; see the module docstring for the normalisations."""

    def __init__(self, config: RNDConfig | None = None, device: str | torch.device = "auto"):
        super().__init__(device)
        self.config = config or RNDConfig()
        cfg = self.config
        if cfg.image_size < 1 or not cfg.channels or cfg.feature_dim < 1:
            raise UserError(f"RNDConfig: need image_size >= 1, some channels and feature_dim >= 1, got {cfg}")
        self.image_size = cfg.image_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.target = conv_features(cfg.channels, cfg.feature_dim, cfg.image_size)
            torch.manual_seed(cfg.seed + 1)
            self.predictor = conv_features(cfg.channels, cfg.feature_dim, cfg.image_size)
        self.target.requires_grad_(False)
        self.obs_rms = RunningMeanStd((3, cfg.image_size, cfg.image_size))
        self.err_rms = RunningMeanStd(())
        for module in self.torch_modules().values():
            module.to(self.device)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=cfg.lr)

    def config_dict(self) -> dict[str, Any]:
        return to_dict(self.config)

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device = "auto") -> "RNDReward":
        return cls(from_dict(RNDConfig, config), device=device)

    def torch_modules(self) -> dict[str, nn.Module]:
        return {"target": self.target, "predictor": self.predictor, "obs_rms": self.obs_rms, "err_rms": self.err_rms}

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.normalize_obs:
            return x
        mean = self.obs_rms.mean.to(x.dtype)
        std = self.obs_rms.std(self.config.eps).to(x.dtype)
        return ((x - mean) / std).clamp(-self.config.obs_clip, self.config.obs_clip)

    def prediction_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared feature error per frame, ``(B,)``, for model-input frames ``x`` in ``[-1, 1]``."""
        x = self._normalize(x)
        return (self.predictor(x) - self.target(x)).pow(2).mean(dim=1)

    def update(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """Train the predictor one Adam step on ``batch["next_obs"]`` (uint8, ``(B, 3, H, W)`` or
        ``(B, H, W, 3)``), after updating the running observation statistics with it; then update
        the running error statistics with the batch's errors. Returns ``reward/rnd_loss`` (the
        mean error before the step) and ``reward/rnd_error_std``."""
        if "next_obs" not in batch:
            raise UserError(f"RND update: batch needs 'next_obs', has keys {sorted(batch)}")
        x = frames_to_model_input(batch["next_obs"], self.image_size, self.device, what="RND update next_obs")
        if self.config.normalize_obs:
            self.obs_rms.update(x)
        errors = self.prediction_errors(x)
        loss = errors.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.err_rms.update(errors.detach())
        return {"reward/rnd_loss": float(loss.detach()),
                "reward/rnd_error_std": float(self.err_rms.std(self.config.eps))}

    @torch.no_grad()
    def bonus(self, next_obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``error / running std of errors`` per frame, float ``(B,)`` on the model's device.

        ``next_obs``: uint8 ``(B, 3, H, W)`` or ``(B, H, W, 3)`` (or floats in ``[0, 255]``).
        Does not change any statistic (only :meth:`update` does).
        """
        x = frames_to_model_input(next_obs, self.image_size, self.device, what="RND next_obs")
        errors = self.prediction_errors(x)
        return errors / self.err_rms.std(self.config.eps).to(errors.dtype)
