"""Build a reward model of any kind from trained networks and an episode dataset, ready to save.

- ``diffusion`` / ``viper``: load the video model (and the codec it recorded), then measure the
  reward statistics on the training expert episodes.
- ``amp``: train the single-frame discriminator offline, expert frames against the frames of a
  non-expert policy (``negative_policy``, by default ``random``), for ``steps`` updates. In RL the
  discriminator keeps training online against the agent's own frames.
- ``rnd``: train the predictor on expert frames for ``steps`` updates, so the bonus measures
  novelty with respect to expert video (in RL it keeps training on the agent's frames).
- ``motion``: the trivial reference scorer (mean absolute pixel change); nothing to fit.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch

from diffusion_reward.data.episodes import EXPERT_POLICIES, EpisodeDataset
from diffusion_reward.errors import UserError
from diffusion_reward.rewards.base import RewardModel
from diffusion_reward.rewards.kinds import BUILTIN_KINDS, FITTED_KINDS


def expert_episodes(dataset: EpisodeDataset, split: str = "train", tasks: Any = None) -> EpisodeDataset:
    picked = dataset.select(policy=EXPERT_POLICIES, split=split, task=tasks)
    if len(picked) == 0:
        roots = ", ".join(str(r) for r in dataset.roots)
        raise UserError(f"{roots}: no {split}-split expert episodes (policies here: {dataset.policies}); "
                        "collect some with `diffusion-reward collect --policy expert`")
    return picked


def _frames(dataset: EpisodeDataset) -> np.ndarray:
    return np.concatenate([ep.frames for ep in dataset])


def _online_steps(model: RewardModel, positives: np.ndarray, negatives: np.ndarray | None, steps: int,
                  batch_size: int, seed: int, progress: Callable[[int], None] | None) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    metrics: dict[str, float] = {}
    source = negatives if negatives is not None else positives
    for _ in range(steps):
        idx = rng.integers(0, len(source), batch_size)
        batch = torch.from_numpy(np.ascontiguousarray(source[idx].transpose(0, 3, 1, 2)))
        metrics = model.update({"next_obs": batch})
        if progress is not None:
            progress(1)
    return metrics


def stats_frames(dataset: EpisodeDataset, tasks: Any = None, stats_episodes: int | None = 5) -> int:
    """Frames a video-model reward scores to measure its statistics (for a progress bar's total)."""
    return expert_episodes(dataset, "train", tasks).limit(stats_episodes).num_frames()


def fit_reward_model(kind: str, dataset: EpisodeDataset, *, video_dir: str | os.PathLike | None = None,
                     codec_dir: str | os.PathLike | None = None, variant: str = "entropy", num_samples: int = 1,
                     stride: int = 10, gumbel: bool = True, bf16: bool | None = None, preset: str = "small",
                     steps: int = 500, batch_size: int = 64, negative_policy: str = "random", tasks: Any = None,
                     seed: int = 0, stats_episodes: int | None = 5, device: str = "auto",
                     progress: Callable[[int], None] | None = None) -> tuple[RewardModel, dict[str, Any]]:
    """Build (and fit) a reward model of ``kind``; returns it and a dict of facts for the log.

    ``progress(n)`` counts the work done: training updates for amp/rnd, scored frames for the
    video-model rewards (:func:`stats_frames` of them in all). The video-model rewards standardize
    with statistics of their raw reward on the first
    ``stats_episodes`` train-split expert episodes of every task (``None``: all of them; scoring
    is the slow part of building them): one mean and std per task, as the paper does, and one over
    all of them for tasks without expert videos.
    """
    if kind not in FITTED_KINDS:
        raise UserError(f"unknown reward kind {kind!r}; expected one of {', '.join(FITTED_KINDS)}")
    experts = expert_episodes(dataset, "train", tasks)
    info: dict[str, Any] = {"kind": kind, "expert_episodes": len(experts), "tasks": experts.tasks}
    if BUILTIN_KINDS[kind].needs == "video":
        if video_dir is None:
            raise UserError(f"--video is required for --kind {kind} (a directory written by train-video)")
        experts = experts.limit(stats_episodes)
        info["stats_episodes"] = len(experts)
        if kind == "diffusion":
            from diffusion_reward.rewards.diffusion import DiffusionRewardConfig, build_diffusion_reward

            cfg = DiffusionRewardConfig(variant=variant, num_samples=num_samples, stride=stride, gumbel=gumbel,
                                        bf16=bf16)
            model: RewardModel = build_diffusion_reward(video_dir, experts, cfg, codec_dir, device, sample_seed=seed,
                                                        progress=progress)
        else:
            from diffusion_reward.rewards.viper import ViperConfig, build_viper_reward

            model = build_viper_reward(video_dir, experts, ViperConfig(bf16=bf16), codec_dir, device,
                                       progress=progress)
        info["stats"] = model.stats.to_dict() if model.stats else None
        info["task_stats"] = {task: stats.to_dict() for task, stats in model.task_stats.items()}
        model.cameras = experts.cameras
        return model, info
    if kind == "motion":
        from diffusion_reward.rewards.motion import MotionReward

        return MotionReward(), info
    size = dataset.image_size or experts[0].frames.shape[1]
    positives = _frames(experts)
    if kind == "amp":
        import dataclasses

        from diffusion_reward.rewards.amp import PRESETS, AMPReward

        negatives_ds = dataset.select(policy=negative_policy, split="train", task=tasks)
        if len(negatives_ds) == 0:
            raise UserError(f"AMP needs train-split {negative_policy!r} episodes to train against "
                            f"(policies here: {dataset.policies}); collect some with "
                            f"`diffusion-reward collect --policy {negative_policy} --episodes N`")
        model = AMPReward(dataclasses.replace(PRESETS[preset], image_size=size, seed=seed), device=device)
        model.attach_expert(positives)
        info["negative_episodes"] = len(negatives_ds)
        info["final"] = _online_steps(model, positives, _frames(negatives_ds), steps, batch_size, seed, progress)
    else:
        import dataclasses

        from diffusion_reward.rewards.rnd import PRESETS, RNDReward

        model = RNDReward(dataclasses.replace(PRESETS[preset], image_size=size, seed=seed), device=device)
        info["final"] = _online_steps(model, positives, None, steps, batch_size, seed, progress)
    info["steps"] = steps
    model.cameras = experts.cameras
    return model, info
