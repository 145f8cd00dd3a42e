"""What one RL benchmark cell costs, reward by reward, with the real trained models: one JSON line per variant.

    python benchmarks/rl_cells.py [--grid benchmarks/rl_grid.toml] [--task dial-turn-v3] [--frames 8000]
                                  [--variants sparse rnd diffusion viper amp amp-batch diffusion-lp1]

Each variant is a cell of the grid (same preset, settings, reward models and expert data), run for
``--frames`` environment frames in a fresh child process, one after the other in this run so that
the machine's drift hits every variant alike. Variants:

- ``sparse``, ``rnd``, ``diffusion``, ``viper``, ``amp``: the grid's rewards as they run now;
- ``amp``: AMP scored per episode, its discriminator trained every 16 updates on 64 frames (the default);
- ``amp-8x128``: the same, trained every 8 updates on the agent's batch (128 frames);
- ``amp-every1``: the same, trained on every update on the agent's batch;
- ``amp-batch``: the AMP cell as it ran before (``--amp-scoring batch``: the discriminator scores every
  step of every sampled batch and trains on every update; the environment steps in the learner's process);
- ``diffusion-lp1``: the diffusion cell with one llvmpipe rasterizer thread (``--render-threads 1``,
  the former default) instead of rasterizing in the rendering thread;
- ``diffusion-worker``: the diffusion cell with the environment stepping and rendering in a worker
  process that overlaps the agent's updates (what ``train-rl`` does by itself from 3 cores on, and on
  2 cores that nothing else keeps busy);
- ``diffusion-inline``: the diffusion cell as it ran before, the environment stepping and rendering in
  the learner's process between updates.

``sparse``, ``diffusion`` and ``amp`` choose the worker as ``train-rl`` does (on a quiet machine of 2+
cores: in a worker); the ``-worker``/``-inline`` variants and ``amp-batch`` pin it.

Every line gives, after the seed frames (the steady state of a cell): milliseconds per environment
frame per stage of the loop (act, batch sampling with the reward terms, agent update, waiting for the
environment and renderer, scoring finished episodes), their sum, the estimated seconds of a cell of
``--cell-frames`` frames (seed frames as measured plus the rest at the steady rate; evaluations not
included: they cost every reward the same), the process's CPU seconds, and the ratio to ``sparse``.
Write the lines to ``benchmarks/results/rl_cells_<machine>.jsonl``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PARTS = ("act", "sample", "update", "env_wait", "reward")
VARIANTS = {  # name -> (grid reward, RLConfig changes)
    "sparse": ("sparse", {}), "rnd": ("rnd", {}), "diffusion": ("diffusion", {}), "viper": ("viper", {}),
    "amp": ("amp", {}), "amp-8x128": ("amp", {"amp_update_every": 8, "amp_batch_size": 0}),
    "amp-every1": ("amp", {"amp_update_every": 1, "amp_batch_size": 0}),
    "amp-batch": ("amp", {"amp_scoring": "batch", "env_worker": False}),
    "diffusion-lp1": ("diffusion", {"render_threads": 1}),
    "diffusion-worker": ("diffusion", {"env_worker": True}),
    "diffusion-inline": ("diffusion", {"env_worker": False}),
}


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One variant in this process: the grid cell, shortened to ``frames``; per-stage steady-state costs."""
    from diffusion_reward.rl.benchmark import load_grid
    from diffusion_reward.rl.loop import RLRun

    grid = load_grid(spec["grid"]).select(tasks=[spec["task"]], rewards=[spec["reward"]], seeds=[0])
    cell = grid.cells()[0]
    config = dataclasses.replace(cell.rl_config(), num_train_frames=spec["frames"], eval_every_frames=0,
                                 num_eval_episodes=0, eval_video_episodes=0, checkpoint_every_frames=0,
                                 tensorboard=False, **spec["changes"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = RLRun(config, Path(tmp) / "run", progress=False, log=lambda message: None)
        build_s = time.perf_counter() - start
        worker = bool(run.use_worker)
        try:
            run.fit()
        finally:
            run.close()
        wall = time.perf_counter() - start
        with (Path(tmp) / "run" / "train.csv").open() as f:
            rows = list(csv.DictReader(f))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seed = [r for r in rows if float(r["step"]) <= config.num_seed_frames]
    steady = [r for r in rows if float(r["step"]) > config.num_seed_frames][1:]  # one warm-up episode
    steady_frames = sum(float(r["episode_length"]) for r in steady) * config.action_repeat
    seed_frames = sum(float(r["episode_length"]) for r in seed) * config.action_repeat
    per_frame = {p: 1000 * sum(float(r[f"time_{p}_s"]) for r in steady) / steady_frames for p in PARTS}
    steady_wall = sum(float(r["episode_length"]) * config.action_repeat / float(r["fps"]) for r in steady)
    seed_wall = sum(float(r["episode_length"]) * config.action_repeat / float(r["fps"]) for r in seed)
    ms_per_frame = 1000 * steady_wall / steady_frames
    cell_s = seed_wall + (spec["cell_frames"] - seed_frames) * ms_per_frame / 1000
    amp = {k: v for k, v in dataclasses.asdict(config).items() if k.startswith("amp_")}
    amp = amp if spec["reward"] == "amp" else {}
    return {**({"amp": amp} if amp else {}), "ms_per_frame": {p: round(v, 3) for p, v in per_frame.items()},
            "ms_per_frame_total": round(ms_per_frame, 3), "env_worker": worker,
            "steady_frames": int(steady_frames), "seed_s": round(seed_wall, 1), "build_s": round(build_s, 1),
            "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            f"cell_{spec['cell_frames'] // 1000}k_s_estimate": round(cell_s, 0), "cell_s_estimate": round(cell_s, 1)}


def markdown_table(lines: list[dict[str, Any]]) -> str:
    """Milliseconds per environment frame by stage, the 100k-frame cell estimate and its ratio to sparse."""
    out = ["| variant | act | sample | update | env + render | reward | total ms/frame | 100k-frame cell | "
           "x sparse |", "|---|---|---|---|---|---|---|---|---|"]
    for line in lines:
        if "error" in line:
            out.append(f"| {line['variant']} | failed: {line['error']} |||||||| ")
            continue
        ms = line["ms_per_frame"]
        out.append(f"| {line['variant']} | " + " | ".join(f"{ms[p]:.2f}" for p in PARTS)
                   + f" | {line['ms_per_frame_total']:.2f} | {line['cell_s_estimate'] / 60:.0f} min | "
                   f"{line.get('cell_over_sparse', float('nan')):.2f} |")
    return "\n".join(out)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", json.dumps(spec)]
    env = dict(os.environ, DIFFUSION_REWARD_PROGRESS="0")
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="benchmarks/rl_grid.toml", help="grid whose cells are measured")
    parser.add_argument("--task", default="dial-turn-v3", help="task of the measured cells")
    parser.add_argument("--frames", type=int, default=8000,
                        help="environment frames per variant (the grid's 4000 seed frames included)")
    parser.add_argument("--cell-frames", type=int, default=100_000, help="cell length the estimate is for")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="variants to measure, in this order")
    parser.add_argument("--table", default=None, metavar="JSONL",
                        help="print the markdown table of a file of this benchmark's lines instead of measuring")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(json.loads(args.one))), flush=True)
        return
    if args.table is not None:
        print(markdown_table([json.loads(line) for line in Path(args.table).read_text().splitlines() if line.strip()]))
        return
    from diffusion_reward.utils.provenance import code_version, machine

    base = {"bench": "rl_cells", "grid": args.grid, "task": args.task, "frames": args.frames,
            "code": code_version(), "machine": machine()}
    sparse_s = None
    for name in args.variants:
        reward, changes = VARIANTS[name]
        spec = {"grid": args.grid, "task": args.task, "reward": reward, "changes": changes, "frames": args.frames,
                "cell_frames": args.cell_frames}
        line = {**base, "variant": name, "changes": changes, **measure(spec)}
        if name == "sparse":
            sparse_s = line.get("cell_s_estimate")
        if sparse_s and line.get("cell_s_estimate"):
            line["cell_over_sparse"] = round(line["cell_s_estimate"] / sparse_s, 2)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
