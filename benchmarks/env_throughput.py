"""Environment throughput: one JSON line per measurement, the variants compared in the same run.

    python benchmarks/env_throughput.py [--seconds 2] [--tasks door-open-v3 reach-v3 door]
                                        [--lp-threads 1 2] [--collect-workers 1 2]

Measurements, in order:

- ``render``: step + render frames/s at 64x64 (one simulator step and one render per frame, random
  actions) for every task and render setting: ``default`` (the simulator's own visuals),
  ``shadow512`` (shadows from a 512 px shadow map, no multisampling), ``msaa4`` (4x multisampling,
  no shadows) and ``fast`` (neither; the project's default);
- ``ratio``: fast / default frames/s per task, from the lines above;
- ``lp_threads``: the fast setting of the first task in a child process per ``LP_NUM_THREADS``
  value (Mesa's llvmpipe rasteriser threads; by default it uses one per core, read when the
  first OpenGL context is made, hence a process per value);
- ``collect``: expert-episode collection (``diffusion_reward.data.collect``, 64x64, action repeat
  2) with 1 and 2 worker processes: rendered frames per second, one frame per agent step
  (:func:`measure_collection` is the place to extend).

Each line carries the rendering backend and the thread settings it ran with. The machine's other
load shows up in the numbers: compare lines of one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

VARIANTS = ("default", "shadow512", "msaa4", "fast")


def settings_for(name: str):
    from diffusion_reward.envs import RenderSettings

    return {
        "default": RenderSettings.default(),
        "shadow512": RenderSettings(shadows=True, shadow_size=512, multisample=0),
        "msaa4": RenderSettings(multisample=4),
        "fast": RenderSettings.fast(),
    }[name]


def context() -> dict[str, Any]:
    from diffusion_reward.envs import BACKEND

    return {"backend": BACKEND.name, "lp_num_threads": os.environ.get("LP_NUM_THREADS"), "cpus": os.cpu_count()}


def emit(line: dict[str, Any]) -> None:
    print(json.dumps({"bench": "env_throughput", **line}), flush=True)


def measure_render(task: str, variant: str, seconds: float) -> dict[str, Any]:
    from diffusion_reward.config import to_dict
    from diffusion_reward.envs.throughput import step_render_fps

    settings = settings_for(variant)
    result = step_render_fps(task, settings, seconds=seconds)
    return {"kind": "render", "task": task, "settings": variant, "render": to_dict(settings), "image_size": 64,
            "frames": result.frames, "seconds": round(result.seconds, 3), "fps": round(result.fps, 2), **context()}


def measure_lp_threads(task: str, threads: str, seconds: float) -> dict[str, Any]:
    """The fast setting of ``task`` in a child process with ``LP_NUM_THREADS=threads``."""
    env = dict(os.environ, LP_NUM_THREADS=threads)
    command = [sys.executable, __file__, "--tasks", task, "--variants", "fast", "--seconds", str(seconds),
               "--lp-threads", "--collect-workers"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = json.loads(out.strip().splitlines()[0])
    line.pop("bench")
    return {**line, "kind": "lp_threads"}


def measure_collection(workers: int, task: str, episodes: int) -> dict[str, Any]:
    """Expert collection of ``episodes`` episodes of ``task`` with ``workers`` processes (fresh dataset)."""
    from diffusion_reward.data.collect import CollectConfig, collect

    config = CollectConfig(task=(task,), episodes=episodes, workers=workers)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        report = collect(config, os.path.join(root, "dataset"), progress=False)
        wall = time.perf_counter() - start
    return {"kind": "collect", "task": task, "workers": workers, "episodes": episodes, "frames": report.frames,
            "seconds": round(wall, 3), "fps": round(report.frames / wall, 2),
            "unit": "rendered frames/s, one per agent step (2 simulator steps), process start-up included",
            **context()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["door-open-v3", "reach-v3", "door"],
                        help="tasks to measure (MetaWorld and Adroit names)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                        help="render settings to measure")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    parser.add_argument("--lp-threads", nargs="*", default=None, metavar="N",
                        help="LP_NUM_THREADS values for the llvmpipe comparison (default: 1 and the core count; "
                             "give the flag alone to skip it)")
    parser.add_argument("--collect-workers", nargs="*", type=int, default=[1, 2], metavar="W",
                        help="worker counts for the collection measurement (give the flag alone to skip it)")
    parser.add_argument("--collect-episodes", type=int, default=8, help="expert episodes per collection run")
    args = parser.parse_args()

    fps: dict[tuple[str, str], float] = {}
    for task in args.tasks:
        for variant in args.variants:
            line = measure_render(task, variant, args.seconds)
            fps[task, variant] = line["fps"]
            emit(line)
        if {"fast", "default"} <= set(args.variants):
            ratio = round(fps[task, "fast"] / fps[task, "default"], 2)
            emit({"kind": "ratio", "task": task, "fast_over_default": ratio,
                  **{f"{v}_fps": fps[task, v] for v in args.variants}})
    lp_threads = [str(1), str(os.cpu_count() or 1)] if args.lp_threads is None else args.lp_threads
    for threads in dict.fromkeys(lp_threads):
        emit(measure_lp_threads(args.tasks[0], threads, args.seconds))
    for workers in args.collect_workers:
        emit(measure_collection(workers, args.tasks[0] if "-v3" in args.tasks[0] else "reach-v3",
                                args.collect_episodes))


if __name__ == "__main__":
    main()
