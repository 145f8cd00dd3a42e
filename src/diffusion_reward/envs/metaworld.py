"""MetaWorld 3.x tasks as a plain simulator (reset / step / state), and their scripted experts.

MetaWorld 3.x ignores ``reset(seed=...)`` and, built directly, freezes the object and goal
positions. Seeding that really decides them: on the task's environment class, turn full
observability on (the goal is part of the 39-d observation, and the scripted experts read it),
unfreeze the random vector and draw it from the environment's own generator
(``_freeze_rand_vec = False``, ``seeded_rand_vec = True``), mark the task as set, and call
``env.seed(seed)`` before ``reset()``. A reset without a new seed continues that generator, so
successive episodes get new goals.

MetaWorld's own episode limit (``max_path_length``, an error past it) is lifted: the environment
wrapper counts the time limit in agent steps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from gymnasium import spaces

from diffusion_reward.errors import UserError

_NO_PATH_LIMIT = 1 << 30


@dataclass(frozen=True)
class CameraView:
    """A camera name that renders one of the model's cameras from another place."""

    base: str  # the model camera rendered from (its orientation is kept)
    position: tuple[float, float, float] | None = None  # where the camera is moved (None: where it is)


# ``corner2-near``: corner2 moved from (1.3, -0.2, 1.1) to (0.75, 0.075, 0.7), about half the
# distance to the table, the placement used by the DrQ-v2 / VIPER line of MetaWorld pixel
# benchmarks. At 64x64 the arm covers 3.4x as many pixels and reach's goal is visible.
# docs/experiments/cameras.md has what each view does to the rewards (and why ``corner2-goal``, the
# goal marker drawn 3x its size, was removed).
CAMERA_VIEWS: dict[str, CameraView] = {
    "corner2-near": CameraView("corner2", position=(0.75, 0.075, 0.7)),
}


class MetaWorldSimulator:
    """One MetaWorld task with seeded goals; ``step`` returns (state, dense reward, success)."""

    domain = "metaworld"

    def __init__(self, task: str) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        env = ALL_V3_ENVIRONMENTS[task]()
        if "sawyer_observation_space" in env.__dict__:  # cached with the goal hidden: recompute
            del env.sawyer_observation_space
        env._partially_observable = False
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        env._set_task_called = True
        env.max_path_length = _NO_PATH_LIMIT
        self.env = env
        self.model, self.data = env.model, env.data
        box = env.sawyer_observation_space
        self.state_space = spaces.Box(box.low.astype(np.float32), box.high.astype(np.float32), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=env.action_space.shape, dtype=np.float32)

    def reset(self, seed: int | None) -> np.ndarray:
        if seed is not None:
            self.env.seed(int(seed))
        state, _ = self.env.reset()
        return state.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        state, reward, _, _, info = self.env.step(action)
        return state.astype(np.float32), float(reward), bool(info["success"])

    def camera_view(self, camera: str) -> str:
        """The model camera to render ``camera`` from, after moving it when ``camera`` is one of
        :data:`CAMERA_VIEWS`."""
        from diffusion_reward.envs.rendering import model_cameras

        names = model_cameras(self.model)
        view = CAMERA_VIEWS.get(camera)
        if view is None:
            if camera not in names:
                raise UserError(f"camera {camera!r} is not a MetaWorld camera; choose one of "
                                f"{names + list(CAMERA_VIEWS)}")
            view = CameraView(camera)
        if view.position is not None:
            self.model.cam_pos[names.index(view.base)] = view.position
        return view.base

    def close(self) -> None:
        self.env.close()


def expert_for(task: str) -> Callable[[np.ndarray], np.ndarray]:
    """MetaWorld's scripted expert for ``task``: ``state (39,) -> action (4,)`` in [-1, 1]."""
    from metaworld.policies import ENV_POLICY_MAP

    if task not in ENV_POLICY_MAP:
        raise UserError(f"MetaWorld has no scripted expert for {task!r}")
    policy = ENV_POLICY_MAP[task]()

    def act(state: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            # The experts' proportional gains overshoot [-1, 1] on purpose; the clip below handles it.
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            action = policy.get_action(np.asarray(state, dtype=np.float64))
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    act.__name__ = act.__qualname__ = f"{type(policy).__name__}.get_action"
    return act
