"""What a learned reward costs per environment step inside Stable-Baselines3, against scoring whole episodes.

    pip install "diffusion-reward[sb3]"
    nice -n 5 python benchmarks/sb3_wrapper.py [--reward-model pretrained/metaworld-small/reward-entropy]
        [--expert-data pretrained/metaworld-small/expert-data] [--envs 1 8] [--steps 16] [--rounds 3]
        [--threads 1] [--note "..."]

Variants, all measured in this run, round after round (each round starts at the next variant, so the
machine's drift hits all of them alike), with the same model:

* ``whole_episode``: ``model.rewards(frames, task=task)`` on one expert episode: milliseconds per frame,
  the reference (the RL loop scores finished episodes this way);
* ``previous``: the single-environment wrapper as it was before the batched path: per environment and
  step, one ``rewards_window`` call on a window stacked from a deque, every frame of the window
  encoded by the codec at every call (``code_cache`` off); ``N`` environments in a ``DummyVecEnv``;
* ``single``: :class:`LearnedRewardWrapper` now (one model call per environment and step; the window
  kept in place, the codes of the frames the previous call encoded reused);
* ``vec``: :class:`LearnedRewardVecWrapper`: one model call per step for all ``N`` environments.

The wrapper variants run with ``--envs`` environments each (1 and 8 by default). The environments replay
recorded expert episodes (real MetaWorld frames, as the pretrained model's data holds them) as uint8
``(3, H, W)`` pixel observations, environment ``i`` an episode of the ``i``-th task with that task's reward
statistics, so that the time measured is the wrapper's and the model's alone (no simulation or rendering).
Every line gives the median over rounds of milliseconds per environment step (wall clock, and the
process's CPU time), the median over rounds of its ratio to ``whole_episode``'s milliseconds per frame
of the same round, the 1-minute load average before and after the measurements, and the
largest difference between a step's reward and the reward of that frame when its whole episode is scored
(0 up to float rounding: the wrappers' contract). Lines go to stdout and are appended to
``benchmarks/results/sb3_wrapper_<machine>.jsonl`` (``--out``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from diffusion_reward.data.episodes import load_dataset
from diffusion_reward.rewards import load_reward_model
from diffusion_reward.rewards.base import check_frames, make_windows
from diffusion_reward.rewards.gym_wrapper import LearnedRewardWrapper
from diffusion_reward.rewards.sb3 import LearnedRewardVecWrapper
from diffusion_reward.rewards.video_based import FrameCodeCache
from diffusion_reward.utils.provenance import code_version, directory_fingerprint, machine, machine_tag

WRAPPERS = ("previous", "single", "vec")


class ReplayEnv(gym.Env):
    """Plays back one recorded episode: its frames as channel-first pixel observations, reward 0."""

    metadata = {"render_modes": []}

    def __init__(self, frames: np.ndarray):
        self.frames = frames.transpose(0, 3, 1, 2).copy()
        self.observation_space = gym.spaces.Box(0, 255, self.frames.shape[1:], np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self.frames[0], {}

    def step(self, action):
        self.t += 1
        return self.frames[self.t], 0.0, False, self.t == len(self.frames) - 1, {}


class PreviousWrapper(gym.Wrapper):
    """The single-environment wrapper's step before the batched path: a deque of frames stacked into a
    window and scored with ``rewards_window`` (the caller turns the model's code cache off)."""

    def __init__(self, env: gym.Env, reward_model, task: str | None):
        super().__init__(env)
        self.reward_model, self.task = reward_model, task
        self.window: collections.deque[np.ndarray] = collections.deque(maxlen=reward_model.history + 1)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.window.extend([np.array(obs.transpose(1, 2, 0), copy=True)] * self.window.maxlen)
        self.t = 0
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.window.append(np.array(obs.transpose(1, 2, 0), copy=True))
        self.t += 1
        learned = self.reward_model.rewards_window(np.stack(self.window), self.t, task=self.task)
        return obs, learned, terminated, truncated, {**info, "env_reward": float(reward), "learned_reward": learned}


def make_venv(variant: str, model, episodes: list[np.ndarray], tasks: list[str], n: int):
    if variant == "vec":
        venv = DummyVecEnv([lambda i=i: ReplayEnv(episodes[i]) for i in range(n)])
        return LearnedRewardVecWrapper(venv, model, task=tasks[:n])
    wrapper = PreviousWrapper if variant == "previous" else LearnedRewardWrapper
    return DummyVecEnv([lambda i=i: wrapper(ReplayEnv(episodes[i]), model, task=tasks[i]) for i in range(n)])


def time_steps(venv, steps: int) -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds of ``steps`` steps (after the untimed reset) and the learned rewards (steps, N)."""
    venv.reset()
    actions = np.zeros((venv.num_envs, 4), np.float32)
    learned = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        venv.step_async(actions)
        learned.append([info["learned_reward"] for info in venv.step_wait()[3]])
    return time.perf_counter() - wall, time.process_time() - cpu, np.array(learned, np.float32)


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def single_window_breakdown(model, frames: np.ndarray, task: str, repeats: int) -> dict[str, dict[str, float]]:
    """Where one window's reward goes (a video-model reward): median wall and CPU milliseconds of each part
    of a single-window call, each timed on its own."""
    step = 5
    window = make_windows(frames[:step + 1], model.history)[step]
    model.code_cache = FrameCodeCache()
    model.codes_of(np.unique(window, axis=0))  # every frame of the window cached: the model alone below
    parts = {
        "input_checks": lambda: check_frames(window, model.image_size),
        "step_generators": lambda: model.generators(np.array([step])),
        "encode_every_window_frame": lambda: model.codec.encode_frames(window),  # the previous path
        "encode_newest_frame": lambda: model.codec.encode_frames(window[-1:]),  # the new path
        "video_model": lambda: model.score_windows(window[None], np.array([step])),  # codes cached
        "standardize": lambda: model._finish(np.zeros(1, np.float32), False, task),
        "rewards_window_previous": lambda: model.rewards_window(window, step, task=task),  # cache off, below
    }
    out = {}
    for name, fn in parts.items():
        if name == "rewards_window_previous":
            model.code_cache = None
        samples = [timed(fn) for _ in range(repeats + 1)][1:]
        out[name] = {"ms": round(1000 * statistics.median(w for w, _ in samples), 3),
                     "cpu_ms": round(1000 * statistics.median(c for _, c in samples), 3)}
    model.code_cache = FrameCodeCache()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reward-model", default="pretrained/metaworld-small/reward-entropy",
                        help="reward model directory (load_reward_model)")
    parser.add_argument("--expert-data", default="pretrained/metaworld-small/expert-data",
                        help="dataset whose expert episodes the environments replay (one per task, first found)")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 8], help="environment counts to measure")
    parser.add_argument("--steps", type=int, default=16, help="timed steps per environment per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="PyTorch intra-op thread counts to measure (default: PyTorch's choice only)")
    parser.add_argument("--device", default="auto", help="device of the reward model: auto, cpu or cuda")
    parser.add_argument("--note", default="", help="free text kept in every line (e.g. what else ran on the machine)")
    parser.add_argument("--out", default=None,
                        help="file to append the lines to (default: benchmarks/results/sb3_wrapper_<machine>.jsonl)")
    args = parser.parse_args()

    model = load_reward_model(args.reward_model, device=args.device)
    data = load_dataset(args.expert_data)
    first: dict[str, int] = {}
    for i, entry in enumerate(data.entries):
        first.setdefault(entry["task"], i)
    tasks = sorted(first)
    n_max = max(args.envs)
    tasks = [tasks[i % len(tasks)] for i in range(n_max)]
    episodes = [data[first[task]].frames for task in tasks]
    if args.steps >= min(len(e) for e in episodes):
        parser.error(f"--steps must be shorter than the episodes ({min(len(e) for e in episodes)} frames)")
    model.code_cache = FrameCodeCache()
    whole = [model.rewards(e, task=t) for e, t in zip(episodes, tasks)]  # the contract's reference rewards

    out = Path(args.out or Path(__file__).parent / "results" / f"sb3_wrapper_{machine_tag()}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    base = {"bench": "sb3_wrapper", "reward_model": args.reward_model,
            "reward_model_fingerprint": directory_fingerprint(args.reward_model), "reward_kind": model.kind,
            "expert_data": args.expert_data, "episode_frames": len(episodes[0]), "steps": args.steps,
            "rounds": args.rounds, "device": str(model.device), "precision": "bf16" if getattr(model, "bf16", False)
            else "fp32", "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "note": args.note,
            "code": code_version(), "machine": machine()}
    variants = [("whole_episode", 1)] + [(v, n) for n in args.envs for v in WRAPPERS]
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        load = [round(os.getloadavg()[0], 2)]
        wall: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        cpu: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        error: dict[tuple[str, int], float] = collections.defaultdict(float)
        for r in range(args.rounds + 1):  # round 0 warms up
            for k in range(len(variants)):
                variant, n = variants[(r + k) % len(variants)]
                model.code_cache = None if variant == "previous" else FrameCodeCache()
                if variant == "whole_episode":
                    w, c = timed(lambda: model.rewards(episodes[0], task=tasks[0]))
                    per = len(episodes[0])
                else:
                    w, c, learned = time_steps(make_venv(variant, model, episodes, tasks, n), args.steps)
                    per = args.steps * n
                    expected = np.stack([whole[i][1:args.steps + 1] for i in range(n)], axis=1)
                    error[variant, n] = max(error[variant, n], float(np.abs(learned - expected).max()))
                if r:
                    wall[variant, n].append(1000 * w / per)
                    cpu[variant, n].append(1000 * c / per)
        lines = []
        if hasattr(model, "codes_of"):  # a video-model reward
            lines.append({"variant": "single_window_breakdown", "envs": 1,
                          "parts": single_window_breakdown(model, episodes[0], tasks[0], 3 * args.rounds)})
        load.append(round(os.getloadavg()[0], 2))
        for variant, n in variants:
            line = {"variant": variant, "envs": n,
                    "unit": "ms per frame" if variant == "whole_episode" else "ms per env step",
                    "ms": round(statistics.median(wall[variant, n]), 2),
                    "cpu_ms": round(statistics.median(cpu[variant, n]), 2),
                    "ms_rounds": [round(v, 2) for v in wall[variant, n]],
                    "ratio_to_whole_episode": round(statistics.median(
                        [v / ref for v, ref in zip(wall[variant, n], wall["whole_episode", 1])]), 3)}
            if variant != "whole_episode":
                line["max_abs_diff_to_whole_episode"] = error[variant, n]
            lines.append(line)
        with out.open("a") as f:
            for line in lines:
                line = {**base, **line, "threads": threads, "load_average_1min": load}
                print(json.dumps(line), flush=True)
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
