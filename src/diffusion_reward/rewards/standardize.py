"""Reward statistics measured on expert videos, and standardization with them.

The paper standardizes the diffusion reward with the mean and standard deviation of that reward
over the task's expert videos before mixing it with the RND bonus. The reference release typed
those numbers into YAML by hand (one key misspelt); here they are always *computed* from the
expert data (:meth:`RewardStats.from_rewards`, or :meth:`RewardModel.fit_stats
<diffusion_reward.rewards.base.RewardModel.fit_stats>`, which measures them per task and pooled
over all tasks) and stored in the reward model's ``config.json`` under ``"task_stats"`` and
``"stats"``, so an artefact carries its own normalisation.

``standardize(r) = (r - mean) / max(std, min_std)``. The floor ``min_std`` keeps a reward that
is (nearly) constant on the expert videos from being blown up by a division by ~0; when it
applies, a warning says so.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, TypeVar

import numpy as np
import torch

from diffusion_reward.errors import UserError
from diffusion_reward.utils.logging import get_logger

DEFAULT_MIN_STD = 1e-6

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


@dataclasses.dataclass(frozen=True)
class RewardStats:
    """Mean and standard deviation of a reward over expert episodes (``count`` = number of rewards)."""

    mean: float
    std: float
    count: int = 0
    min_std: float = DEFAULT_MIN_STD

    def __post_init__(self) -> None:
        for name in ("mean", "std", "min_std"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise UserError(f"reward stats: {name} must be a finite number, got {value!r}")
        if self.std < 0 or self.min_std <= 0:
            raise UserError(f"reward stats: need std >= 0 and min_std > 0, got std={self.std}, "
                            f"min_std={self.min_std}")

    @classmethod
    def from_rewards(cls, rewards: Iterable[Any], min_std: float = DEFAULT_MIN_STD) -> "RewardStats":
        """Pool every reward of every array (one per expert episode) and measure mean and std.

        Raises :class:`UserError` when there are no rewards or some are NaN/infinite (a broken
        model should not be normalised into plausible-looking numbers).
        """
        arrays = [np.asarray(_to_numpy(r), dtype=np.float64).reshape(-1) for r in rewards]
        values = np.concatenate(arrays) if arrays else np.zeros(0)
        if values.size == 0:
            raise UserError("reward stats: no rewards given (need at least one expert episode with one frame)")
        bad = int(np.sum(~np.isfinite(values)))
        if bad:
            raise UserError(f"reward stats: {bad} of {values.size} expert rewards are NaN or infinite")
        stats = cls(mean=float(values.mean()), std=float(values.std()), count=int(values.size), min_std=min_std)
        if stats.std < min_std:
            get_logger().warning("reward std on the expert videos is %.3g, below the floor %.3g; "
                                 "standardizing divides by the floor instead", stats.std, min_std)
        return stats

    @property
    def scale(self) -> float:
        """The divisor actually used: ``max(std, min_std)``."""
        return max(self.std, self.min_std)

    def standardize(self, rewards: ArrayLike) -> ArrayLike:
        """``(rewards - mean) / scale``; NumPy arrays stay float32 arrays, tensors stay tensors."""
        if isinstance(rewards, torch.Tensor):
            return (rewards - self.mean) / self.scale
        return ((np.asarray(rewards, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)

    def unstandardize(self, rewards: ArrayLike) -> ArrayLike:
        """The inverse of :meth:`standardize`."""
        if isinstance(rewards, torch.Tensor):
            return rewards * self.scale + self.mean
        return (np.asarray(rewards, dtype=np.float64) * self.scale + self.mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RewardStats":
        try:
            return cls(**data)
        except TypeError as exc:
            raise UserError(f"reward stats: cannot read {data!r} ({exc})") from None


def standardize(rewards: ArrayLike, stats: RewardStats | None) -> ArrayLike:
    """Standardize with ``stats``, or return ``rewards`` unchanged when there are none."""
    return rewards if stats is None else stats.standardize(rewards)


def _to_numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x
