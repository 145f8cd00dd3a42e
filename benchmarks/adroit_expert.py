"""The Adroit planning expert: success rate and seconds per episode, one JSON line per task.

    nice -n 5 python benchmarks/adroit_expert.py [--tasks door hammer pen] [--first-seed 1000]
        [--episodes 10 | --seeds 1001 1006] [--trace-every 5] [--jobs 2] [--samples 48 --horizon 20 ...] [--out FILE]

Each episode runs the expert (``diffusion_reward.envs.adroit_expert.AdroitPlanner``, the task's
default settings unless planner flags are given) for the task's full horizon (action repeat 2) on
a state-only environment (no rendering: the planner's cost is measured) in a worker process with
one thread. Seeds ``first_seed .. first_seed + episodes - 1`` (1000 on are held out: the settings
were chosen on seeds below 100). An episode succeeds when ``info["success"]`` is true at any step,
as ``diffusion-reward collect`` counts it.

A line per task gives the planner settings, the success rate, the agent step of the first success,
seconds per episode (wall and the process's CPU time, mean and max) and the episodes themselves.
CPU seconds are what one core costs; wall seconds also carry whatever else the machine runs, so each
line records the load average before and after and the number of parallel episodes (``--jobs``).
Lines go to stdout and, with ``--out``, are appended to that file (the committed results are
``benchmarks/results/adroit_expert_<machine>.jsonl``).

    python benchmarks/adroit_expert.py --from-dataset data/adroit [--out FILE]

reads the success rate off a dataset that ``collect --suite adroit`` made instead of running episodes: per
task and split, the expert episodes kept and the seeds tried for them (an episode's ``attempt`` + 1, as its
manifest entry records). Episodes that failed every seed they were given are not in a dataset (``collect``
reports them); the line says how many episodes were kept at each attempt, so such a gap shows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any


def run_episode(task: str, seed: int, settings: dict[str, Any], trace_every: int = 0) -> dict[str, Any]:
    """One expert episode in this process; its outcome and cost, and with ``trace_every`` the task's progress
    measures (:meth:`~diffusion_reward.envs.adroit_expert.TaskObjective.progress`) every that many agent steps."""
    from diffusion_reward.envs import make_env
    from diffusion_reward.envs.adroit_expert import AdroitPlanner, PlannerSettings

    env = make_env(task, pixels=False)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        planner = AdroitPlanner(env, PlannerSettings(**settings), seed=seed)
        state, _ = env.reset(seed=seed)
        first_success, dense_return, steps, trace = None, 0.0, 0, []
        while True:
            state, _, _, truncated, info = env.step(planner(state))
            dense_return += info["dense_reward"]
            if info["success"] and first_success is None:
                first_success = steps
            steps += 1
            if trace_every and (steps % trace_every == 0 or truncated):
                trace.append({"step": steps, "success": bool(info["success"]),
                              **{k: round(v, 3) for k, v in planner.objective.progress(planner.data).items()}})
            if truncated:
                break
        episode = {"seed": seed, "success": first_success is not None, "first_success": first_success,
                   "final_success": bool(info["success"]), "dense_return": round(dense_return, 2), "steps": steps,
                   "plans": planner.plans_made, "wall_s": round(time.perf_counter() - wall, 2),
                   "cpu_s": round(time.process_time() - cpu, 2)}
        return {**episode, "trace": trace} if trace_every else episode
    finally:
        env.close()


def _one_thread() -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"


def summarise(task: str, settings: dict[str, Any], episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The line of one task: success rate, first success, seconds per episode (mean and max)."""
    n = len(episodes)
    firsts = [e["first_success"] for e in episodes if e["first_success"] is not None]
    line = {"task": task, "settings": settings, "episodes": n, "successes": sum(e["success"] for e in episodes),
            "success_rate": round(sum(e["success"] for e in episodes) / n, 3),
            "first_success_mean": round(sum(firsts) / len(firsts), 1) if firsts else None}
    for key in ("wall_s", "cpu_s"):
        values = [e[key] for e in episodes]
        line[f"{key}_mean"], line[f"{key}_max"] = round(sum(values) / n, 2), max(values)
    line["per_episode"] = sorted(episodes, key=lambda e: e["seed"])
    return line


def from_dataset(root: Path) -> list[dict[str, Any]]:
    """One line per task and split of a collected dataset's expert episodes: kept episodes over seeds tried."""
    from diffusion_reward.utils.checkpoint import read_json

    entries = [e for e in read_json(root / "manifest.json")["episodes"] if e["policy"] == "expert"]
    lines = []
    for task, split in sorted({(e["task"], e["split"]) for e in entries}):
        kept = [e for e in entries if (e["task"], e["split"]) == (task, split)]
        tried = sum(e["attempt"] + 1 for e in kept)
        by_attempt = [sum(e["attempt"] == a for e in kept) for a in range(max(e["attempt"] for e in kept) + 1)]
        commits = sorted({e["code"]["commit"] for e in kept if "code" in e})
        lines.append({"task": task, "split": split, "kept": len(kept), "seeds_tried": tried,
                      "success_rate": round(len(kept) / tried, 3), "kept_at_attempt": by_attempt,
                      "seeds": [min(e["seed"] for e in kept), max(e["seed"] for e in kept)], "collected_by": commits})
    return lines


def main() -> None:
    from diffusion_reward.config import add_config_args, config_from_args
    from diffusion_reward.envs.adroit_expert import PLANNER_DEFAULTS, PlannerSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(PLANNER_DEFAULTS), choices=list(PLANNER_DEFAULTS),
                        help="Adroit tasks to measure")
    parser.add_argument("--first-seed", type=int, default=1000, help="seed of the first episode (1000 on: held out)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes (consecutive seeds) per task")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="these seeds instead of --first-seed/--episodes (say, the ones that failed)")
    parser.add_argument("--trace-every", type=int, default=0, metavar="STEPS",
                        help="record the task's progress measures (distances, angles, heights) every STEPS agent "
                             "steps of each episode, to see where a failed one stuck (0: no trace)")
    parser.add_argument("--jobs", type=int, default=1, help="episodes run side by side, one process and thread each")
    parser.add_argument("--out", default=None, help="append the lines to this JSONL file too")
    parser.add_argument("--from-dataset", default=None, metavar="DIR",
                        help="read the success rates off this dataset's expert episodes instead of running any")
    add_config_args(parser, PlannerSettings)
    args = parser.parse_args()
    from diffusion_reward.utils.provenance import code_version, machine

    def emit(line: dict[str, Any]) -> None:
        text = json.dumps(line)
        print(text, flush=True)
        if args.out:
            with Path(args.out).open("a") as f:
                f.write(text + "\n")

    if args.from_dataset:
        base = {"bench": "adroit_expert_collect", "code": code_version(), "dataset": args.from_dataset}
        for line in from_dataset(Path(args.from_dataset)):
            emit({**base, **line})
        return

    base = {"bench": "adroit_expert", "code": code_version(), "machine": machine(), "jobs": args.jobs,
            "action_repeat": 2}
    context = multiprocessing.get_context("spawn")
    for task in args.tasks:
        settings = dataclasses.asdict(config_from_args(PlannerSettings, args, base=PLANNER_DEFAULTS[task]))
        seeds = args.seeds or range(args.first_seed, args.first_seed + args.episodes)
        load_start = os.getloadavg()
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_one_thread) as pool:
            episodes = list(pool.map(run_episode, [task] * len(seeds), seeds, [settings] * len(seeds),
                                     [args.trace_every] * len(seeds)))
        emit({**base, "load_avg_start": [round(x, 2) for x in load_start],
              "load_avg_end": [round(x, 2) for x in os.getloadavg()], **summarise(task, settings, episodes)})


if __name__ == "__main__":
    main()
