"""Simulated tasks (MetaWorld 3.x and Adroit) behind one Gymnasium contract, rendered headless.

    env = make_env("reach-v3", image_size=64, seed=0)      # uint8 (3, 64, 64) observations
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    expert = expert_policy("reach-v3")                      # state -> action
    action = expert(info["state"])
    expert = expert_policy("door", env=env, seed=0)         # Adroit: plans on env's simulator

See ``task_env.py`` for the observation, reward, time-limit and seeding conventions,
``tasks.py`` for task names and suites, and ``rendering.py`` for the rendering backend and the
:class:`RenderSettings` that datasets record.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# The rendering backend must be chosen before anything imports mujoco.
from diffusion_reward.envs.rendering import (  # noqa: I001
    BACKEND,
    FreeCamera,
    RenderBackend,
    RenderingUnavailable,
    RenderSettings,
)
from diffusion_reward.envs.task_env import TaskEnv
from diffusion_reward.envs.tasks import SUITES, TaskSpec, all_tasks, resolve_suite, resolve_task
from diffusion_reward.errors import UserError

__all__ = [
    "BACKEND", "SUITES", "FreeCamera", "RenderBackend", "RenderSettings", "RenderingUnavailable", "TaskEnv",
    "TaskSpec", "all_tasks", "expert_policy", "make_env", "resolve_suite", "resolve_task",
]


def make_env(task: str, *, image_size: int = 64, camera: str | None = None, action_repeat: int = 2,
             max_episode_steps: int | None = None, seed: int | None = None,
             render: RenderSettings | None = None, pixels: bool = True) -> TaskEnv:
    """Build the environment of ``task`` (see :func:`resolve_task` for accepted names).

    ``camera`` defaults to the task's (``corner2`` for MetaWorld, ``top`` for Adroit door and
    hammer, ``vil_camera`` for pen); ``max_episode_steps`` (agent steps) to the task's;
    ``render`` to :meth:`RenderSettings.fast`. ``seed`` seeds the first reset.
    ``pixels=False`` gives the native state as the observation (no rendering needed).
    """
    spec = resolve_task(task)
    if image_size < 1:
        raise UserError(f"image_size must be a positive number of pixels, got {image_size}")
    if action_repeat < 1:
        raise UserError(f"action_repeat must be >= 1, got {action_repeat}")
    steps = spec.max_episode_steps if max_episode_steps is None else max_episode_steps
    if steps < 1:
        raise UserError(f"max_episode_steps must be >= 1, got {steps}")
    camera = spec.camera if camera is None else camera
    if spec.domain == "metaworld":
        from diffusion_reward.envs.metaworld import MetaWorldSimulator

        simulator = MetaWorldSimulator(spec.name)
        view: str | FreeCamera = simulator.camera_view(camera)
    else:
        from diffusion_reward.envs.adroit import FREE_CAMERAS, AdroitSimulator

        simulator = AdroitSimulator(spec.name)
        view = FREE_CAMERAS.get(camera, camera)
    try:
        return TaskEnv(spec, simulator, image_size=image_size, camera=camera, camera_view=view,
                       action_repeat=action_repeat, max_episode_steps=steps, seed=seed,
                       render=RenderSettings.fast() if render is None else render, pixels=pixels)
    except BaseException:
        simulator.close()
        raise


def expert_policy(task: str, env: TaskEnv | None = None,
                  seed: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The expert of ``task``: ``state -> action`` (feed it ``info["state"]``).

    MetaWorld: the task's scripted expert (``env`` and ``seed`` are not needed). Adroit: a planner
    for one episode (:class:`~diffusion_reward.envs.adroit_expert.AdroitPlanner`) that plans on
    ``env``'s simulator, the :class:`TaskEnv` of ``task`` the actions go to, with sampling noise
    seeded by ``seed``; build one per episode. Raises :class:`UserError` for an Adroit task without
    its ``env``.
    """
    spec = resolve_task(task)
    if spec.expert_plans:
        if env is None or env.task_spec.name != spec.name:
            raise UserError(f"the expert of {spec.name!r} plans on the simulator: pass the task's environment, "
                            f"expert_policy({spec.name!r}, env=make_env({spec.name!r}), seed=...)")
        from diffusion_reward.envs.adroit_expert import AdroitPlanner

        return AdroitPlanner(env, seed=seed)
    from diffusion_reward.envs.metaworld import expert_for

    return expert_for(spec.name)
