"""The reward the RL agent optimises, from its parts: ``(1 - alpha) r_model + alpha r_rnd + r_sparse``.

- ``r_model``: the reward model's reward (for the diffusion reward, standardized with the
  expert statistics stored in the model: :mod:`diffusion_reward.rewards.standardize`);
- ``r_rnd``: the RND novelty bonus of the next observation (:mod:`diffusion_reward.rewards.rnd`);
- ``r_sparse``: the environment's success reward.

Default ``alpha`` per method (:data:`DEFAULT_ALPHA`):

==========  =====  ==========================================================================
method      alpha  total reward
==========  =====  ==========================================================================
diffusion   0.95   0.05 * standardized diffusion reward + 0.95 * RND + sparse (the paper)
viper       0.5    0.5 * VIPER log-likelihood reward + 0.5 * RND + sparse (the paper)
amp         0.0    AMP reward + sparse (no RND bonus)
rnd         1.0    RND + sparse: the RND-only baseline; pass the bonus as ``rnd``, no model term
sparse      0.0    sparse only (the sparse model's reward is zero)
motion      0.0    motion reward + sparse (a reference point, not a paper baseline)
==========  =====  ==========================================================================

:func:`combine_rewards` returns the total and each *weighted* term, so the terms add up to the
total and the RL loop can log every one under ``reward/model``, ``reward/rnd``,
``reward/sparse`` and ``reward/total``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union

import numpy as np
import torch

from diffusion_reward.config import option
from diffusion_reward.errors import UserError
from diffusion_reward.rewards.kinds import BUILTIN_KINDS

DEFAULT_ALPHA: dict[str, float] = {kind: spec.alpha for kind, spec in BUILTIN_KINDS.items()}

Rewards = Union[np.ndarray, torch.Tensor, float]


def default_alpha(method: str) -> float:
    """The RND weight ``alpha`` used with ``method`` (a reward kind); see the table above."""
    try:
        return DEFAULT_ALPHA[method]
    except KeyError:
        raise UserError(f"no default RND weight for reward {method!r}; known: {', '.join(DEFAULT_ALPHA)} "
                        "(pass alpha explicitly)") from None


def combine_rewards(model: Rewards | None = None, rnd: Rewards | None = None, sparse: Rewards | None = None,
                    *, alpha: float) -> dict[str, Any]:
    """``total = (1 - alpha) * model + alpha * rnd + sparse``, and each weighted term.

    Each argument is a NumPy array, a torch tensor or a number, or ``None`` for a term that is
    absent (counted as zeros). The present terms must have the same shape (no silent
    broadcasting of a ``(B,)`` against a ``(B, 1)``). If any term is a tensor the results are
    tensors on its device, else float32 arrays. Returns ``{"reward/model": (1 - alpha) * model,
    "reward/rnd": alpha * rnd, "reward/sparse": sparse, "reward/total": their sum}``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha (the RND weight) must be in [0, 1], got {alpha}")
    terms = {"model": model, "rnd": rnd, "sparse": sparse}
    present = {k: v for k, v in terms.items() if v is not None}
    if not present:
        raise UserError("combine_rewards: give at least one of model, rnd, sparse")
    tensor = next((v for v in present.values() if isinstance(v, torch.Tensor)), None)
    if tensor is not None:
        dtype = tensor.dtype if tensor.dtype.is_floating_point else torch.float32
        values = {k: torch.as_tensor(v, dtype=dtype, device=tensor.device) for k, v in present.items()}
    else:
        values = {k: np.asarray(v, dtype=np.float32) for k, v in present.items()}
    shapes = {k: tuple(v.shape) for k, v in values.items()}
    if len(set(shapes.values())) > 1:
        raise UserError(f"combine_rewards: reward terms have different shapes {shapes}")
    reference = next(iter(values.values()))
    zeros = torch.zeros_like(reference) if tensor is not None else np.zeros_like(reference)
    weighted = {"model": (1.0 - alpha) * values.get("model", zeros),
                "rnd": alpha * values.get("rnd", zeros),
                "sparse": values.get("sparse", zeros)}
    if tensor is None:
        weighted = {k: np.asarray(v, dtype=np.float32) for k, v in weighted.items()}
    total = weighted["model"] + weighted["rnd"] + weighted["sparse"]
    return {"reward/model": weighted["model"], "reward/rnd": weighted["rnd"],
            "reward/sparse": weighted["sparse"], "reward/total": total}


@dataclasses.dataclass(frozen=True)
class RewardMix:
    """How a Gymnasium wrapper mixes its learned reward with the environment's reward.

    Step reward = ``learned_weight * learned + env_weight * env_reward``. A wrapper has no RND
    term (nothing trains online inside it), so :meth:`for_method` keeps the paper's weight of
    the model term, ``1 - alpha``, and adds the environment's sparse reward with weight 1; for
    the ``rnd`` method the wrapped model *is* the RND bonus and gets weight 1.
    """

    learned_weight: float = option(1.0, "weight of the reward model's reward")
    env_weight: float = option(1.0, "weight of the environment's own (sparse) reward")

    @classmethod
    def for_method(cls, method: str) -> "RewardMix":
        """The mix matching :func:`combine_rewards` with ``method``'s default ``alpha``."""
        alpha = default_alpha(method)
        return cls(learned_weight=1.0 if method == "rnd" else 1.0 - alpha, env_weight=1.0)

    def __call__(self, learned: float, env_reward: float) -> dict[str, float]:
        """``{"reward/model", "reward/sparse", "reward/total"}`` of one step (weighted terms)."""
        model, sparse = self.learned_weight * float(learned), self.env_weight * float(env_reward)
        return {"reward/model": model, "reward/sparse": sparse, "reward/total": model + sparse}
