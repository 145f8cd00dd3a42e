"""The Gymnasium environment every part of the project steps: one task, pixels or state, action repeat.

``TaskEnv`` turns a simulator (MetaWorld or Adroit, see ``metaworld.py`` / ``adroit.py``) into the
project's environment contract:

- observation: upright ``uint8 (3, S, S)`` pixels, or the simulator's native low-dim state as
  ``float32`` with ``pixels=False``;
- ``step`` repeats the action ``action_repeat`` times; ``reward`` is the sparse success signal
  (1.0 for every simulator step at which the task is solved) summed over the repeats;
  ``terminated`` is always False; ``truncated`` is True from the ``max_episode_steps``-th agent step;
- ``info``: ``success`` (solved at any repeated step), ``dense_reward`` (the simulator's shaped
  reward summed over the repeats) and ``state`` (the float32 native state, in pixel mode too);
  ``reset`` returns ``state`` too;
- ``reset(seed=s)`` decides the initial state and the goal: the same seed gives the same first
  frame, different seeds different goals. A seed given to the constructor seeds the first reset.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from diffusion_reward.envs.rendering import FrameRenderer, FreeCamera, RenderSettings
from diffusion_reward.envs.tasks import TaskSpec


class TaskEnv(gymnasium.Env):
    """One simulated task with the project's observation, reward and time-limit conventions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, task_spec: TaskSpec, simulator: Any, *, image_size: int, camera: str,
                 camera_view: str | FreeCamera, action_repeat: int, max_episode_steps: int,
                 seed: int | None, render: RenderSettings, pixels: bool) -> None:
        self.task_spec = task_spec
        self.simulator = simulator
        self.image_size = image_size
        self.camera = camera
        self._camera_view = camera_view
        self.action_repeat = action_repeat
        self.max_episode_steps = max_episode_steps
        self.render_settings = render
        self.pixels = pixels
        self.render_mode = "rgb_array"
        self.action_space = simulator.action_space
        self.state_space: spaces.Box = simulator.state_space
        if pixels:
            self.observation_space = spaces.Box(0, 255, shape=(3, image_size, image_size), dtype=np.uint8)
        else:
            self.observation_space = simulator.state_space
        self._renderer: FrameRenderer | None = None
        if pixels:
            self._make_renderer()
        self._first_seed = seed
        self._elapsed_steps = 0
        self._closed = False

    def _make_renderer(self) -> FrameRenderer:
        if self._renderer is None:
            self._renderer = FrameRenderer(self.simulator.model, self.simulator.data, image_size=self.image_size,
                                           camera=self._camera_view, settings=self.render_settings)
        return self._renderer

    @property
    def renderer(self) -> FrameRenderer:
        """The :class:`FrameRenderer` of this environment (made on first use when ``pixels=False``)."""
        return self._make_renderer()

    def render_frame(self) -> np.ndarray:
        """The current state as an upright ``uint8 (H, W, 3)`` frame (the pixel observation, transposed)."""
        return self._make_renderer().render()

    def render(self) -> np.ndarray:  # type: ignore[override]
        """Gymnasium's ``render`` (``rgb_array`` mode): same as :meth:`render_frame`."""
        return self.render_frame()

    def _observation(self, state: np.ndarray) -> np.ndarray:
        if not self.pixels:
            return state
        return np.ascontiguousarray(self.render_frame().transpose(2, 0, 1))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._first_seed is not None:
            seed = self._first_seed
        self._first_seed = None
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(int(seed))
        state = self.simulator.reset(seed)
        self._elapsed_steps = 0
        return self._observation(state), {"state": state}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.action_space.shape:
            raise ValueError(f"{self.task_spec.name}: action shape {action.shape}, expected {self.action_space.shape}")
        action = np.clip(action, -1.0, 1.0)
        reward = dense_reward = 0.0
        success = False
        for _ in range(self.action_repeat):
            state, dense, solved = self.simulator.step(action)
            dense_reward += dense
            reward += float(solved)
            success = success or solved
        self._elapsed_steps += 1
        truncated = self._elapsed_steps >= self.max_episode_steps
        info = {"success": success, "dense_reward": dense_reward, "state": state}
        return self._observation(state), reward, False, truncated, info

    def close(self) -> None:
        """Free the renderer's OpenGL context and the simulator (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.simulator.close()

    def __repr__(self) -> str:
        view = "pixels" if self.pixels else "state"
        return (f"TaskEnv({self.task_spec.name}, {view}, {self.image_size}px, camera={self.camera}, "
                f"repeat={self.action_repeat}, steps={self.max_episode_steps})")
