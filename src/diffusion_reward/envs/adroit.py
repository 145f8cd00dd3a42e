"""The Adroit hand tasks (door, hammer, pen) of gymnasium-robotics as a plain simulator.

The newest registered version of ``AdroitHand{Door,Hammer,Pen}`` is used (v1 in
gymnasium-robotics 1.4.2; v2 where it exists), with its dense reward, which is reported as
``info["dense_reward"]``; success is the environment's own ``info["success"]`` (door: hinge opened
past 1.35 rad; hammer: nail driven within 1 cm; pen: position within 7.5 cm and orientation
cosine above 0.95). gymnasium-robotics 1.4.x prints a notice at import that the v1 *dense* reward
changed in 1.2.1; it does not concern the success signal, and is kept off the console here.

Cameras. The paper renders pen from the model's ``vil_camera`` and door and hammer from a
top-down view, which the models lack, so ``top`` is a free camera defined here: it looks
straight down (elevation -90 degrees, azimuth 90, so the forearm enters from the bottom of the
frame and the door or nail board is at the top) at (0, 0, 0.15) m from 0.9 m away, which frames
the hand, the door handle and the nail board over the table.
"""

from __future__ import annotations

import contextlib
import io
import re

import numpy as np
from gymnasium import spaces

from diffusion_reward.envs.rendering import FreeCamera

TOP_CAMERA = FreeCamera(lookat=(0.0, 0.0, 0.15), distance=0.9, azimuth=90.0, elevation=-90.0)
FREE_CAMERAS = {"top": TOP_CAMERA}


def _import_gymnasium_robotics() -> None:
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics  # noqa: F401  (registers the Adroit environments)


def registered_id(task: str) -> str:
    """The newest registered gymnasium id of an Adroit task (``door`` -> ``AdroitHandDoor-v1``)."""
    import gymnasium

    _import_gymnasium_robotics()
    stem = f"AdroitHand{task.capitalize()}"
    versions = [int(m.group(1)) for env_id in gymnasium.registry
                if (m := re.fullmatch(rf"{stem}-v(\d+)", env_id))]
    if not versions:
        raise RuntimeError(f"gymnasium-robotics registers no {stem}-v*; is gymnasium-robotics installed?")
    return f"{stem}-v{max(versions)}"


class AdroitSimulator:
    """One Adroit task; ``step`` returns (state, dense reward, success)."""

    domain = "adroit"

    def __init__(self, task: str) -> None:
        import gymnasium

        self.env_id = registered_id(task)
        self.env = gymnasium.make(self.env_id, disable_env_checker=True).unwrapped
        self.model, self.data = self.env.model, self.env.data
        shape = self.env.observation_space.shape
        self.state_space = spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=self.env.action_space.shape, dtype=np.float32)

    def reset(self, seed: int | None) -> np.ndarray:
        state, _ = self.env.reset(seed=None if seed is None else int(seed))
        return state.astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        state, reward, _, _, info = self.env.step(action)
        return state.astype(np.float32), float(reward), bool(info["success"])

    def close(self) -> None:
        self.env.close()
