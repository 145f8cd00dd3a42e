"""How fast this machine steps and renders a task: the number ``doctor`` and the benchmark report.

A *frame* here is one simulator step followed by one render (the environment is built with
``action_repeat=1``), with random actions from a seeded action space. The first few frames are
not timed: the software rasteriser compiles its shaders on the first renders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from diffusion_reward.envs import make_env
from diffusion_reward.envs.rendering import RenderSettings


@dataclass(frozen=True)
class Throughput:
    """Frames rendered in a timed window; ``fps`` = frames per second of step + render."""

    task: str
    image_size: int
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds


def step_render_fps(task: str, settings: RenderSettings, *, image_size: int = 64, seconds: float = 1.0,
                    min_frames: int = 5, warmup_frames: int = 3, seed: int = 0) -> Throughput:
    """Time step + render of ``task`` for about ``seconds`` (and at least ``min_frames`` frames)."""
    env = make_env(task, image_size=image_size, render=settings, action_repeat=1, seed=seed,
                   max_episode_steps=1 << 30)  # one long episode: resets are not timed
    try:
        env.reset()
        for _ in range(warmup_frames):
            env.step(env.action_space.sample())
        frames = 0
        start = time.perf_counter()
        while frames < min_frames or time.perf_counter() - start < seconds:
            env.step(env.action_space.sample())
            frames += 1
        return Throughput(task, image_size, frames, time.perf_counter() - start)
    finally:
        env.close()
