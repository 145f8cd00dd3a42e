"""Compare finished (or running) ``train-rl`` runs: one curve per task and reward, mean and spread over seeds.

Each run directory holds ``config.json`` (task, reward, reward model, seed, observations) and
``eval.csv`` (one row per evaluation: environment frames, success rate, return). :func:`compare_runs`
groups the runs by task and reward (runs of one reward kind with different reward-model
directories are kept apart, labelled ``diffusion [rewards/entropy]``: the last two parts of the
directory), averages the seeds at every evaluated frame count, and writes

* ``rl_comparison.png``: one panel per task, the mean over seeds as a line and the range
  (min to max over seeds) as a band, the number of seeds in the legend;
* ``rl_comparison.md`` and ``rl_comparison.json``: per (task, reward) the seeds, the last
  evaluated frame count, the final value (mean and range over seeds), the best mean and the mean
  over all evaluations (an area-under-the-curve summary).

Seeds that stopped at different lengths are averaged over the seeds that reached each point
(the table's ``seeds`` column is the number of runs; the final value uses the runs that reached
the last frame count of the group).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from diffusion_reward.errors import UserError
from diffusion_reward.rl.loop import read_evaluations

METRICS = {"success_rate": "success rate", "episode_return": "episode return"}
OUTPUTS = ("rl_comparison.png", "rl_comparison.md", "rl_comparison.json")


@dataclasses.dataclass
class RunCurve:
    """One run's evaluations of one metric."""

    run_dir: Path
    task: str
    reward: str
    seed: int
    obs: str
    frames: list[int]
    values: list[float]


def find_run_dirs(paths: Iterable[str | os.PathLike], skipped: list[Path] | None = None) -> list[Path]:
    """``paths`` with every folder that is not itself a run replaced by the runs directly inside it.

    Plain files among ``paths`` (what a shell glob such as ``runs/rl/*`` also picks up) are left
    out and appended to ``skipped``; a path that does not exist is an error.
    """
    paths = [Path(p) for p in paths]
    found: list[Path] = []
    for p in paths:
        if p.is_file():
            if skipped is not None:
                skipped.append(p)
            continue
        if not p.is_dir():
            raise UserError(f"{p}: no such run directory")
        if (p / "config.json").is_file() or (p / "eval.csv").is_file():
            found.append(p)
            continue
        inside = sorted(d for d in p.iterdir() if d.is_dir() and (d / "eval.csv").is_file())
        if not inside:
            raise UserError(f"{p}: neither a train-rl run directory (config.json + eval.csv) nor a folder of them")
        found.extend(inside)
    if not found:
        raise UserError(f"{', '.join(map(str, paths))}: files, not train-rl run directories")
    return found


def load_run(run_dir: str | os.PathLike, metric: str = "success_rate") -> RunCurve:
    """Read a run's ``config.json`` and ``eval.csv``; a clear :class:`UserError` when either is unusable."""
    run_dir = Path(run_dir)
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; choose from {sorted(METRICS)}")
    config_path, eval_path = run_dir / "config.json", run_dir / "eval.csv"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: no config.json (not a train-rl run directory)")
    try:
        config = json.loads(config_path.read_text())
        task, reward, seed = str(config["task"]), str(config["reward"]), int(config["seed"])
        if config.get("reward_model"):
            reward += f" [{'/'.join(Path(str(config['reward_model'])).parts[-2:])}]"
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{config_path}: not a train-rl config (needs task, reward and seed): {e}") from None
    if not eval_path.is_file():
        raise UserError(f"{run_dir}: no eval.csv yet (the run has not evaluated)")
    evaluations = read_evaluations(run_dir)
    if not evaluations:
        raise UserError(f"{eval_path}: no evaluations yet")
    frames, values = [e["frame"] for e in evaluations], [e[metric] for e in evaluations]
    return RunCurve(run_dir, task, reward, seed, str(config.get("obs", "")), frames, values)


def aggregate(curves: Sequence[RunCurve]) -> dict[str, Any]:
    """Mean, min, max and count over ``curves`` at every frame count any of them evaluated at."""
    frames = sorted({f for c in curves for f in c.frames})
    by_frame: dict[int, list[float]] = defaultdict(list)
    for c in curves:
        for f, v in zip(c.frames, c.values):
            by_frame[f].append(v)
    stats = {k: [] for k in ("mean", "min", "max", "count")}
    for f in frames:
        vals = np.asarray(by_frame[f], dtype=float)
        stats["mean"].append(float(vals.mean()))
        stats["min"].append(float(vals.min()))
        stats["max"].append(float(vals.max()))
        stats["count"].append(int(len(vals)))
    return {"frames": frames, **stats}


def summarise(curves: Sequence[RunCurve]) -> dict[str, Any]:
    """The table row of one (task, reward) group."""
    agg = aggregate(curves)
    last = agg["frames"][-1]
    finals = [c.values[c.frames.index(last)] for c in curves if last in c.frames]
    return {"task": curves[0].task, "reward": curves[0].reward, "seeds": sorted(c.seed for c in curves),
            "runs": [str(c.run_dir) for c in curves], "last_frames": last,
            "final_mean": float(np.mean(finals)), "final_min": float(np.min(finals)),
            "final_max": float(np.max(finals)), "final_runs": len(finals),
            "best_mean": float(max(agg["mean"])), "mean_over_evaluations": float(np.mean(agg["mean"])),
            "curve": agg}


def _markdown(rows: Sequence[dict[str, Any]], metric: str) -> str:
    name = METRICS[metric]
    lines = [f"| task | reward | seeds | frames | final {name}: mean [min, max] | best mean | mean over evaluations |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['reward']} | {len(r['seeds'])} | {r['last_frames']} | "
                     f"{r['final_mean']:.2f} [{r['final_min']:.2f}, {r['final_max']:.2f}] | {r['best_mean']:.2f} | "
                     f"{r['mean_over_evaluations']:.2f} |")
    return "\n".join(lines) + "\n"


def _plot(rows: Sequence[dict[str, Any]], path: Path, metric: str, title: str) -> None:
    from diffusion_reward.evaluation.plots import _pyplot

    plt = _pyplot()
    tasks = sorted({r["task"] for r in rows})
    cols = min(3, len(tasks))
    nrows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for r in (r for r in rows if r["task"] == task):
            c = r["curve"]
            n = len(r["seeds"])
            line, = ax.plot(c["frames"], c["mean"], marker="o", ms=3,
                            label=f"{r['reward']} ({n} seed{'s' if n != 1 else ''})")
            if n > 1:
                ax.fill_between(c["frames"], c["min"], c["max"], color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("environment frames")
        ax.set_ylabel(METRICS[metric])
        if metric == "success_rate":
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def compare_runs(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, metric: str = "success_rate",
                 title: str = "") -> dict[str, Any]:
    """Group ``run_dirs`` (runs, or folders of runs) by task and reward and write the figure and tables."""
    from diffusion_reward.utils.checkpoint import atomic_path, atomic_write_json

    skipped: list[Path] = []
    curves = [load_run(d, metric) for d in find_run_dirs(run_dirs, skipped)]
    groups: dict[tuple[str, str], list[RunCurve]] = defaultdict(list)
    for c in curves:
        groups[(c.task, c.reward)].append(c)
    for (task, reward), group in groups.items():
        seeds = [c.seed for c in group]
        if len(set(seeds)) != len(seeds):
            dup = sorted({s for s in seeds if seeds.count(s) > 1})
            raise UserError(f"{task} / {reward}: seed(s) {dup} appear in more than one run directory "
                            f"({', '.join(str(c.run_dir) for c in group if c.seed in dup)}); pass each run once")
    rows = [summarise(groups[k]) for k in sorted(groups)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figure = out / OUTPUTS[0]
    with atomic_path(figure) as tmp:
        _plot(rows, Path(tmp), metric, title)
    with atomic_path(out / OUTPUTS[1]) as tmp:
        Path(tmp).write_text(_markdown(rows, metric))
    atomic_write_json(out / OUTPUTS[2], {"metric": metric, "groups": rows})
    return {"figure": str(figure), "rows": rows, "skipped": [str(p) for p in skipped]}


def plot_run(run_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path | None:
    """Draw one run's success rate against frames (default: ``<run_dir>/success.png``); ``None`` before
    its first evaluation."""
    from diffusion_reward.evaluation.plots import plot_learning_curves

    run_dir = Path(run_dir)
    evaluations = read_evaluations(run_dir)
    if not evaluations:
        return None
    config = json.loads((run_dir / "config.json").read_text())
    path = Path(path) if path is not None else run_dir / "success.png"
    plot_learning_curves({f"{config['reward']} (seed {config['seed']})":
                          ([e["frame"] for e in evaluations], [e["success_rate"] for e in evaluations])},
                         path, title=f"{config['task']}, {config['obs']} observations")
    return path
