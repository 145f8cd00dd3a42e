"""RL loop throughput: agent frames/s and where the time goes, one JSON line per variant, in one run.

    python benchmarks/rl_throughput.py [--task reach-v3] [--episodes 3] [--obs pixels state state-render]
                                       [--env local worker] [--learner-threads 1 2] [--render-threads 1]

Every variant runs the real loop (:class:`diffusion_reward.rl.loop.RLRun`, the paper's DrQ-v2:
batch 256, hidden 1024, update every 2 agent steps, action repeat 2) in a fresh child process, so
that ``LP_NUM_THREADS`` and PyTorch's thread count hold from the start. Observation modes:

- ``pixels``: the agent sees 64x64 frames (render every step, conv encoder), sparse reward;
- ``state``: the agent sees the 39-d state, sparse reward: nothing is rendered;
- ``state-render``: the agent sees the state, and a learned reward (the ``motion`` model, a cheap
  stand-in for the diffusion reward) needs every frame, so every step renders.

Environments: ``local`` steps in the learner's process, ``worker`` in a worker process whose step
overlaps the update. Each line reports ``fps`` (environment frames per second, after one warm-up
episode past the seed frames) and ``ms_per_step``: milliseconds per agent step spent acting,
sampling batches (replay, reward terms, online reward models), updating the agent, waiting for
the environment (all of step + render when local; only what the update did not hide when in a
worker) and scoring episodes; then the
ratio of its fps to the ``local`` variant with the same other settings. The machine's other load
shows up in the numbers: compare lines of one run, not across runs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

EPISODE_STEPS = 25
SEED_EPISODES = 2


def run_variant(variant: dict[str, Any]) -> dict[str, Any]:
    """One variant, in this process: build the run, train, read the per-episode timings back."""
    import torch

    from diffusion_reward.rewards import MotionReward
    from diffusion_reward.rl.loop import PRESETS, RLRun

    with tempfile.TemporaryDirectory() as tmp:
        reward = {"reward": "sparse"}
        if variant["obs"] == "state-render":
            reward = {"reward": "motion", "reward_model": str(MotionReward().save_pretrained(Path(tmp) / "motion")),
                      "alpha": 0.0}
        frames_per_episode = EPISODE_STEPS * 2
        total_episodes = SEED_EPISODES + 1 + variant["episodes"]
        config = dataclasses.replace(
            PRESETS["paper"], task=variant["task"], obs="state" if variant["obs"] != "pixels" else "pixels",
            num_train_frames=total_episodes * frames_per_episode, max_episode_steps=EPISODE_STEPS,
            num_seed_frames=SEED_EPISODES * frames_per_episode, eval_every_frames=0, num_eval_episodes=0,
            eval_video_episodes=0, checkpoint_every_frames=0, tensorboard=False,
            env_worker=variant["env"] == "worker", learner_threads=variant["learner_threads"],
            render_threads=variant["render_threads"], device="cpu", **reward)
        run = RLRun(config, Path(tmp) / "run", progress=False, log=lambda message: None)
        try:
            run.fit()
        finally:
            run.close()
        with (Path(tmp) / "run" / "train.csv").open() as f:
            all_rows = list(csv.DictReader(f))
        rows = all_rows[SEED_EPISODES + 1:]  # past the seed frames and one warm-up episode
        updates = int(float(all_rows[-1]["updates"]) - float(all_rows[SEED_EPISODES]["updates"]))
        threads = torch.get_num_threads()
    frames = sum(float(r["episode_length"]) for r in rows) * 2
    parts = ("act", "sample", "update", "env_wait", "reward")
    seconds = {p: sum(float(r[f"time_{p}_s"]) for r in rows) for p in parts}
    wall = sum(frames_per_episode / float(r["fps"]) for r in rows)
    steps = frames / 2
    return {**variant, "frames": int(frames), "fps": round(frames / wall, 2),
            "ms_per_step": {p: round(1000 * s / steps, 2) for p, s in seconds.items()},
            "ms_per_step_other": round(1000 * (wall - sum(seconds.values())) / steps, 2),
            "updates": updates,
            "torch_threads": threads, "lp_num_threads": os.environ.get("LP_NUM_THREADS"), "cpus": os.cpu_count()}


def measure(variant: dict[str, Any]) -> dict[str, Any]:
    """``variant`` in a fresh child process (clean thread settings); its JSON result."""
    command = [sys.executable, __file__, "--one", json.dumps(variant)]
    env = dict(os.environ)
    if variant["env"] == "local" and variant["render_threads"] > 0:
        env["LP_NUM_THREADS"] = str(variant["render_threads"])
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {**variant, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="reach-v3", help="task to step")
    parser.add_argument("--episodes", type=int, default=3,
                        help=f"timed episodes of {EPISODE_STEPS} agent steps per variant (after the seed frames "
                             "and one warm-up episode)")
    parser.add_argument("--obs", nargs="+", default=["state", "state-render", "pixels"],
                        choices=["pixels", "state", "state-render"], help="observation modes to measure")
    parser.add_argument("--env", nargs="+", default=["local", "worker"], choices=["local", "worker"],
                        help="where the environment steps")
    parser.add_argument("--learner-threads", nargs="+", type=int, default=[1, 2],
                        help="PyTorch threads of the learner")
    parser.add_argument("--render-threads", nargs="+", type=int, default=[1],
                        help="LP_NUM_THREADS of the renderer (0: Mesa's default, one per core)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure each variant this many times, alternating the environments, and add a "
                             "summary line with the median frames/s (the machine's load drifts)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_variant(json.loads(args.one))), flush=True)
        return
    for obs, learner, render in itertools.product(args.obs, args.learner_threads, args.render_threads):
        if obs == "state" and render != args.render_threads[0]:
            continue  # nothing is rendered
        fps: dict[str, list[float]] = {env: [] for env in args.env}
        for repeat in range(args.repeats):
            local_fps = None
            for env in args.env:
                variant = {"bench": "rl_throughput", "task": args.task, "obs": obs, "env": env,
                           "learner_threads": learner, "render_threads": render, "episodes": args.episodes}
                line = {**measure(variant), "repeat": repeat}
                if "fps" in line:
                    fps[env].append(line["fps"])
                if env == "local":
                    local_fps = line.get("fps")
                elif local_fps and "fps" in line:
                    line["fps_over_local"] = round(line["fps"] / local_fps, 3)
                print(json.dumps(line), flush=True)
        if args.repeats > 1:
            medians = {env: round(statistics.median(v), 2) for env, v in fps.items() if v}
            summary = {"bench": "rl_throughput", "kind": "summary", "task": args.task, "obs": obs,
                       "learner_threads": learner, "render_threads": render, "repeats": args.repeats,
                       "median_fps": medians}
            if medians.get("local") and medians.get("worker"):
                summary["median_worker_over_local"] = round(medians["worker"] / medians["local"], 3)
            print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
