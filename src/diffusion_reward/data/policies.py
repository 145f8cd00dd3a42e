"""The policies that collect episodes: the expert, a uniformly random one, and noisy experts.

Policy names (as given to ``diffusion-reward collect --policy`` and stored in the manifest):

* ``expert``        the task's expert (:func:`diffusion_reward.envs.expert_policy`): MetaWorld's
                    scripted one, or for Adroit a planner on the environment's simulator
* ``random``        actions drawn uniformly from the action space
* ``noisy:<std>``   the expert's action plus Gaussian noise of standard deviation ``std``,
                    clipped to the action bounds ([-1, 1]); ``noisy:0`` is the expert

A policy is a callable ``policy(state) -> action`` taking the environment's low-dimensional
state (``info["state"]``). Random draws (and the Adroit planner's sampling) come from generators
seeded per episode, so an episode is reproducible from (task, policy, seed) alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from diffusion_reward.errors import UserError

Policy = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """A parsed policy name."""

    kind: str  # "expert" | "random" | "noisy"
    std: float = 0.0

    @property
    def name(self) -> str:
        return f"noisy:{self.std!r}" if self.kind == "noisy" else self.kind  # noisy:1.0, noisy:0.3

    @property
    def needs_expert(self) -> bool:
        return self.kind in ("expert", "noisy")


def parse_policy(name: str) -> PolicySpec:
    """Parse ``expert``, ``random`` or ``noisy:<std>``; anything else is a :class:`UserError`."""
    text = name.strip().lower()
    if text in ("expert", "random"):
        return PolicySpec(text)
    if text.startswith("noisy:"):
        try:
            std = float(text.split(":", 1)[1])
        except ValueError:
            std = float("nan")
        if not math.isfinite(std) or std < 0:
            raise UserError(f"policy {name!r}: the noise level must be a non-negative number, as in noisy:0.3")
        return PolicySpec("noisy", std)
    raise UserError(f"unknown policy {name!r}; expected expert, random or noisy:<std> (e.g. noisy:0.3)")


def canonical_policy_name(name: str) -> str:
    """The name stored in the manifest (``noisy:0.30`` -> ``noisy:0.3``, ``noisy:1`` -> ``noisy:1.0``)."""
    return parse_policy(name).name


def _bounds(action_space: Any) -> tuple[np.ndarray, np.ndarray]:
    low = np.asarray(action_space.low, dtype=np.float32)
    high = np.asarray(action_space.high, dtype=np.float32)
    return low, high


class RandomPolicy:
    """Uniform random actions within the action space's bounds."""

    def __init__(self, action_space: Any, seed: int | None):
        self.low, self.high = _bounds(action_space)
        self.rng = np.random.default_rng(seed)

    def __call__(self, state: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class ExpertPolicy:
    """The expert, its actions clipped to the action bounds, optionally with Gaussian noise."""

    def __init__(self, expert: Policy, action_space: Any, std: float = 0.0, seed: int | None = None):
        self.expert = expert
        self.low, self.high = _bounds(action_space)
        self.std = float(std)
        self.rng = np.random.default_rng(seed)

    def __call__(self, state: np.ndarray) -> np.ndarray:
        action = np.asarray(self.expert(state), dtype=np.float32).reshape(self.low.shape)
        if self.std > 0:
            action = action + self.rng.normal(0.0, self.std, size=action.shape).astype(np.float32)
        return np.clip(action, self.low, self.high).astype(np.float32)


def make_policy(name: str | PolicySpec, task: str, action_space: Any, seed: int | None = None,
                expert: Policy | None = None, env: Any = None) -> Policy:
    """Build the policy ``name`` for ``task`` (one episode's worth).

    ``expert`` may pass an already built scripted expert (to reuse it across episodes); otherwise
    it is built with :func:`diffusion_reward.envs.expert_policy`, which needs ``env`` (the task's
    :class:`~diffusion_reward.envs.TaskEnv`) for Adroit's planner and raises a :class:`UserError`
    for tasks that have none. ``seed`` seeds the policy's own randomness.
    """
    spec = parse_policy(name) if isinstance(name, str) else name
    if spec.kind == "random":
        return RandomPolicy(action_space, seed)
    if expert is None:
        from diffusion_reward.envs import expert_policy

        expert = expert_policy(task, env=env, seed=seed)
    return ExpertPolicy(expert, action_space, std=spec.std if spec.kind == "noisy" else 0.0, seed=seed)
