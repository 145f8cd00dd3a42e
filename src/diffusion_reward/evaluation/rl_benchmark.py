"""The RL benchmark's report, from cell records alone: per-task table, rliable aggregates, figures, README block.

    report = benchmark_report(["benchmarks/results/rl/metaworld-state-small"], "docs/images/rl")

Per (task, reward), over the seeds, at the budget (the cells' ``num_train_frames``):

* **success** at the budget (the last evaluation at or before it): mean and [min, max];
* **frames to 0.8**: the first evaluated frame count with success >= 0.8, averaged over the seeds
  that reached it, with how many did;
* **AUC**: area under the success curve from 0 to the budget (trapezoid rule over the
  evaluations), divided by the budget: 1 means solved from the first frame, 0 never solved;
* **dense**: the simulator's hand-shaped reward per simulator step at the budget (mean over
  seeds), which no method trains on: it ranks cells in which nothing succeeds.

Over all tasks and seeds, with rliable (Agarwal et al. 2021): the interquartile mean (IQM) of
success at the budget and of AUC per reward, with 95% stratified-bootstrap intervals, and the
probability that ``ours`` (Diffusion Reward) improves on each other reward. Aggregates use the
tasks on which every reward has every seed; a partial grid says which tasks those are.
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
from diffusion_reward.evaluation.report import GeneratedBlock


def rl_block(name: str = "rl-benchmark") -> GeneratedBlock:
    """The README block ``plot-rl --readme`` writes; one per grid (``rl-benchmark-adroit``, ...)."""
    return GeneratedBlock(name, "generated from the records by plot-rl --readme")


README_BLOCK = rl_block()
README_BEGIN, README_END = README_BLOCK.begin, README_BLOCK.end
SOLVED = 0.8
FULL_SEEDS = 3  # a (task, reward) row is complete with this many seeds, as the grids run them (0, 1, 2)
OUTPUTS = ("rl_curves.png", "rl_aggregate.png", "rl_benchmark.md", "rl_benchmark.json")


@dataclasses.dataclass
class CellCurve:
    """One finished cell's evaluations (from its record)."""

    path: Path
    grid: str
    task: str
    reward: str
    seed: int
    budget: int
    frames: list[int]
    success: list[float]
    dense: list[float]


def is_record(path: Path) -> bool:
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == "diffusion-reward/rl-cell"
    except (ValueError, AttributeError, OSError):
        return False


def find_records(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Record files among ``paths`` and inside the folders among them (searched recursively)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [q for q in sorted(p.rglob("*.json")) if is_record(q)]
        elif is_record(p):
            found.append(p)
    return found


def load_record_curve(path: Path) -> CellCurve:
    from diffusion_reward.rl.benchmark import read_record

    record = read_record(path)
    ev = record["evaluations"]
    nan = float("nan")
    return CellCurve(path, str(record["grid"]), str(record["task"]), str(record["reward"]), int(record["seed"]),
                     int(record["budget"]), [int(f) for f in ev["frame"]],
                     [nan if v is None else float(v) for v in ev["success_rate"]],
                     [nan if v is None else float(v) for v in ev.get("dense_reward", [None] * len(ev["frame"]))])


def value_at(frames: Sequence[int], values: Sequence[float], budget: int) -> float:
    """The value of the last evaluation at or before ``budget``."""
    picked = [v for f, v in zip(frames, values) if f <= budget]
    return picked[-1] if picked else float("nan")


def area_under_curve(frames: Sequence[int], values: Sequence[float], budget: int) -> float:
    """Trapezoid area under the curve from frame 0 to ``budget``, divided by ``budget`` (the curve is held flat
    after its last evaluation before the budget)."""
    points = [(f, v) for f, v in zip(frames, values) if f <= budget]
    if not points or budget <= 0:
        return float("nan")
    if points[-1][0] < budget:
        points.append((budget, points[-1][1]))
    x, y = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / budget)


def frames_to(frames: Sequence[int], values: Sequence[float], level: float, budget: int) -> int | None:
    return next((f for f, v in zip(frames, values) if f <= budget and v >= level), None)


def task_rows(curves: Sequence[CellCurve], budget: int) -> list[dict[str, Any]]:
    """One row per (task, reward) at ``budget``: success, frames to 0.8, AUC, dense reward (see the docstring)."""
    groups: dict[tuple[str, str], list[CellCurve]] = defaultdict(list)
    for c in curves:
        groups[(c.task, c.reward)].append(c)
    rows = []
    for (task, reward), group in sorted(groups.items()):
        group = sorted(group, key=lambda c: c.seed)
        success = [value_at(c.frames, c.success, budget) for c in group]
        reached = [frames_to(c.frames, c.success, SOLVED, budget) for c in group]
        hits = [r for r in reached if r is not None]
        rows.append({
            "task": task, "reward": reward, "seeds": [c.seed for c in group],
            "success": float(np.mean(success)), "success_min": float(np.min(success)),
            "success_max": float(np.max(success)), "success_per_seed": success,
            "frames_to_solved": float(np.mean(hits)) if hits else None, "seeds_solved": len(hits),
            "auc": float(np.mean([area_under_curve(c.frames, c.success, budget) for c in group])),
            "dense": float(np.nanmean([value_at(c.frames, c.dense, budget) for c in group])),
        })
    return rows


def aggregates(curves: Sequence[CellCurve], budget: int, ours: str, reps: int = 2000,
               seed: int = 0) -> dict[str, Any]:
    """rliable's IQM (success at the budget, AUC) per reward with 95% stratified-bootstrap intervals, and the
    probability that ``ours`` improves on each other reward, over the tasks every reward has every seed of (none
    before the records hold two rewards and :data:`FULL_SEEDS` seeds)."""
    import warnings

    state = np.random.get_state()
    np.random.seed(seed)  # rliable's stratified bootstrap draws its resamples from NumPy's global generator
    try:
        with warnings.catch_warnings():  # arch deprecates the RandomState that rliable hands it
            warnings.simplefilter("ignore", FutureWarning)
            return _aggregates(curves, budget, ours, reps, seed)
    finally:
        np.random.set_state(state)


def _aggregates(curves: Sequence[CellCurve], budget: int, ours: str, reps: int, seed: int) -> dict[str, Any]:
    from rliable import library as rly
    from rliable import metrics

    rewards = sorted({c.reward for c in curves})
    seeds = sorted({c.seed for c in curves})
    by_key = {(c.task, c.reward, c.seed): c for c in curves}
    tasks = sorted(t for t in {c.task for c in curves}
                   if all((t, r, s) in by_key for r in rewards for s in seeds))
    if len(seeds) < FULL_SEEDS or len(rewards) < 2:
        tasks = []  # a pilot (one seed, or one reward) has nothing to aggregate or compare yet
    out: dict[str, Any] = {"tasks": tasks, "rewards": rewards, "seeds": seeds, "budget": budget,
                           "bootstrap_reps": reps, "iqm": {}, "probability_of_improvement": {}}
    if not tasks:
        return out

    def matrix(reward: str, score: str) -> np.ndarray:
        def one(c: CellCurve) -> float:
            return value_at(c.frames, c.success, budget) if score == "success" else area_under_curve(
                c.frames, c.success, budget)
        return np.array([[one(by_key[(t, reward, s)]) for t in tasks] for s in seeds], dtype=float)

    for score in ("success", "auc"):
        scores = {r: matrix(r, score) for r in rewards}
        points, intervals = rly.get_interval_estimates(
            scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
            random_state=np.random.RandomState(seed))
        out["iqm"][score] = {r: {"value": float(points[r][0]), "low": float(intervals[r][0][0]),
                                 "high": float(intervals[r][1][0])} for r in rewards}
    if ours in rewards:
        pairs = {f"{ours},{r}": (matrix(ours, "success"), matrix(r, "success")) for r in rewards if r != ours}
        if pairs:
            points, intervals = rly.get_interval_estimates(
                pairs, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps=reps,
                random_state=np.random.RandomState(seed))
            for key in pairs:
                other = key.split(",", 1)[1]
                out["probability_of_improvement"][other] = {
                    "value": float(points[key][0]), "low": float(intervals[key][0][0]),
                    "high": float(intervals[key][1][0])}
    return out


def _fmt_frames(f: float | None) -> str:
    if f is None:
        return "-"
    return f"{f / 1000:.0f}k" if f >= 1000 else f"{f:.0f}"


def _aggregate_lines(agg: dict[str, Any], ours: str, all_tasks: Sequence[str]) -> list[str]:
    if not agg.get("tasks"):
        return ["No task has every reward with every seed yet: no aggregate.", ""]
    missing = [t for t in all_tasks if t not in agg["tasks"]]
    scope = (f"{len(agg['tasks'])} tasks x {len(agg['seeds'])} seeds"
             + (f" (left out until every reward has every seed: {', '.join(missing)})" if missing else ""))
    lines = [f"Over {scope}, with rliable: interquartile mean (IQM) and 95% stratified-bootstrap interval "
             f"({agg['bootstrap_reps']} resamples); P(improve): the probability that {ours} beats the reward on a "
             "task and seed drawn at random (success at the budget).", "",
             f"| reward | IQM success | IQM AUC | P({ours} improves) |", "|---|---|---|---|"]
    for reward in agg["rewards"]:
        s, a = agg["iqm"]["success"][reward], agg["iqm"]["auc"][reward]
        p = agg["probability_of_improvement"].get(reward)
        poi = f"{p['value']:.2f} [{p['low']:.2f}, {p['high']:.2f}]" if p else "-"
        lines.append(f"| {reward} | {s['value']:.2f} [{s['low']:.2f}, {s['high']:.2f}] | "
                     f"{a['value']:.2f} [{a['low']:.2f}, {a['high']:.2f}] | {poi} |")
    return lines + [""]


def markdown(rows: Sequence[dict[str, Any]], agg: dict[str, Any], budget: int, ours: str,
             all_tasks: Sequence[str], figures: dict[str, str] | None = None) -> str:
    """The full report: per (task, reward) every number, the aggregate table and the figures' links."""
    lines = [f"Success rate at {_fmt_frames(budget)} frames (mean [min, max] over seeds), frames to the first "
             f"evaluation with success >= {SOLVED} (mean over the seeds that got there, and how many did), area "
             "under the success curve (AUC, 0-1) and the simulator's dense reward per step at the budget (which no "
             "method trains on).", "",
             "| task | reward | seeds | success | frames to 0.8 | AUC | dense |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"**{r['reward']}**" if r["reward"] == ours else r["reward"]
        lines.append(f"| {r['task']} | {name} | {len(r['seeds'])} | "
                     f"{r['success']:.2f} [{r['success_min']:.2f}, {r['success_max']:.2f}] | "
                     f"{_fmt_frames(r['frames_to_solved'])} ({r['seeds_solved']}/{len(r['seeds'])}) | "
                     f"{r['auc']:.2f} | {r['dense']:.2f} |")
    lines += ["", *_aggregate_lines(agg, ours, all_tasks)]
    for caption, path in (figures or {}).items():
        lines += [f"![{caption}]({path})", ""]
    return "\n".join(lines)


def verdict(cells: dict[str, dict[str, Any]], ours: str, rewards: Sequence[str] = ()) -> str:
    """Ours against the best other reward of one task (``cells``: reward -> row), by success at the budget:
    *ahead* when every seed of ours ends at least as high as every seed of the best other one (and the means
    differ), *behind* the other way round, otherwise *level*: a difference within the seeds' spread is noise.
    Empty until ours and another reward have all their seeds; prefixed "so far:" while one of ``rewards`` (the
    grid's) has not all its seeds on this task."""
    def complete(row: dict[str, Any] | None) -> bool:
        return row is not None and len(row["seeds"]) >= FULL_SEEDS

    mine = cells.get(ours)
    others = [r for name, r in cells.items() if name != ours and complete(r)]
    if not complete(mine) or not others:
        return ""
    pending = any(name != ours and not complete(cells.get(name)) for name in rewards)
    prefix = "so far: " if pending else ""
    best = max(others, key=lambda r: (r["success"], r["auc"]))
    if max(mine["success"], best["success"]) == 0:
        return prefix + "nothing succeeds"
    diff = mine["success"] - best["success"]
    if diff > 0 and mine["success_min"] >= best["success_max"]:
        return f"{prefix}ahead of {best['reward']} (+{diff:.2f})"
    if diff < 0 and mine["success_max"] <= best["success_min"]:
        return f"{prefix}behind {best['reward']} ({diff:.2f})"
    return f"{prefix}level with {best['reward']} ({diff:+.2f})"


def readme_markdown(rows: Sequence[dict[str, Any]], agg: dict[str, Any], budget: int, ours: str,
                    all_tasks: Sequence[str], figures: dict[str, str], full_report: str) -> str:
    """The README's compact block: success at the budget as a task x reward matrix, the aggregates, the figures
    and a link to the full report (``full_report``)."""
    rewards = list(dict.fromkeys(r["reward"] for r in sorted(rows, key=lambda r: (r["reward"] != ours,))))
    cells = {(r["task"], r["reward"]): r for r in rows}
    lines = [f"Success rate at {_fmt_frames(budget)} frames, mean [min, max] over the seeds (blank: not run yet); "
             f"frames to success >= {SOLVED}, curve area and dense reward in the [full report]({full_report}). "
             f"Verdict: {ours} against the best other reward, *ahead* or *behind* only when every seed of one ends "
             f"at least as high as every seed of the other, else *level*.", "",
             "| task | " + " | ".join(f"**{r}**" if r == ours else r for r in rewards) + " | verdict |",
             "|---|" + "---|" * (len(rewards) + 1)]
    for task in all_tasks:
        row = []
        for reward in rewards:
            r = cells.get((task, reward))
            n = 0 if r is None else len(r["seeds"])
            row.append("" if r is None else f"{r['success']:.2f} [{r['success_min']:.1f}, {r['success_max']:.1f}]"
                       + (f" ({n} seed{'s' if n > 1 else ''})" if n < FULL_SEEDS else ""))
        row.append(verdict({reward: r for (t, reward), r in cells.items() if t == task}, ours, rewards))
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    lines += ["", *_aggregate_lines(agg, ours, all_tasks)]
    for caption, path in figures.items():
        lines += [f"![{caption}]({path})", ""]
    return "\n".join(lines)


def _plot_aggregate(agg: dict[str, Any], path: Path) -> None:
    """rliable's interval plot: IQM of success at the budget and of AUC per reward, with the bootstrap intervals."""
    from diffusion_reward.evaluation.plots import _pyplot

    plt = _pyplot()
    from rliable import plot_utils

    rewards = agg["rewards"]
    points = {r: np.array([agg["iqm"][s][r]["value"] for s in ("success", "auc")]) for r in rewards}
    intervals = {r: np.array([[agg["iqm"][s][r]["low"] for s in ("success", "auc")],
                              [agg["iqm"][s][r]["high"] for s in ("success", "auc")]]) for r in rewards}
    fig, axes = plot_utils.plot_interval_estimates(points, intervals, ["IQM success at budget", "IQM AUC"],
                                                   algorithms=rewards, xlabel="", subfigure_width=3.6,
                                                   row_height=0.45, xlabel_y_coordinate=-0.3)
    for ax in np.atleast_1d(axes):
        ax.set_xlim(-0.02, 1.02)
        ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
        ax.tick_params(labelsize=11)
    fig.savefig(path, dpi=110, format="png", bbox_inches="tight")
    plt.close(fig)


def load_records(paths: Sequence[str | os.PathLike], budget: int | None = None) -> tuple[list[CellCurve], int]:
    """The cell curves of every record under ``paths`` (one grid, one record per cell) that reach ``budget``
    (default: the largest budget among them), and that budget."""
    records = find_records(paths)
    if not records:
        raise UserError(f"{', '.join(map(str, paths))}: no RL cell records (benchmark-rl writes them)")
    curves = [load_record_curve(p) for p in records]
    grids = sorted({c.grid for c in curves})
    if len(grids) > 1:
        raise UserError(f"records of several grids ({', '.join(grids)}): report one grid at a time")
    seen: dict[tuple[str, str, int], Path] = {}
    for c in curves:
        key = (c.task, c.reward, c.seed)
        if key in seen:
            raise UserError(f"{c.path} and {seen[key]}: two records of {c.task} / {c.reward} / seed {c.seed}")
        seen[key] = c.path
    budget = budget or max(c.budget for c in curves)
    curves = [c for c in curves if c.budget >= budget and c.frames and c.frames[-1] >= budget]
    if not curves:
        raise UserError(f"no record reaches {budget} frames")
    return curves, budget


def report_text(curves: Sequence[CellCurve], budget: int, *, ours: str = "diffusion", reps: int = 2000,
                figures_link: str = ".") -> tuple[list[dict[str, Any]], dict[str, Any], str, str]:
    """The per-task rows, the aggregates, the full report's markdown (its figures beside it) and the README's
    compact block (links to the figures and the report under ``figures_link``)."""
    rows = task_rows(curves, budget)
    agg = aggregates(curves, budget, ours, reps=reps)
    link = figures_link.rstrip("/")
    figures = {"success against frames per task (mean over seeds, band: min to max)": OUTPUTS[0]}
    if agg.get("tasks"):
        figures["IQM with 95% bootstrap intervals"] = OUTPUTS[1]
    tasks = sorted({c.task for c in curves})
    full = markdown(rows, agg, budget, ours, tasks, figures)
    short = readme_markdown(rows, agg, budget, ours, tasks, {alt: f"{link}/{name}" for alt, name in figures.items()},
                            f"{link}/{OUTPUTS[2]}")
    return rows, agg, full, short


def benchmark_report(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, ours: str = "diffusion",
                     budget: int | None = None, reps: int = 2000, readme: str | os.PathLike | None = None,
                     figures_link: str | None = None, title: str = "", block: str = "rl-benchmark") -> dict[str, Any]:
    """Read every record under ``paths``; write :data:`OUTPUTS` to ``out``; with ``readme``, replace the README's
    generated block named ``block`` (:func:`rl_block`) with the tables and figure links (``figures_link``: how the
    README reaches ``out``, default ``out`` itself)."""
    from diffusion_reward.evaluation.rl_comparison import RunCurve, _plot, summarise
    from diffusion_reward.utils.checkpoint import atomic_path, atomic_write_json, atomic_write_text

    curves, budget = load_records(paths, budget)
    rows, agg, text, short = report_text(curves, budget, ours=ours, reps=reps,
                                         figures_link=figures_link or str(out))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[RunCurve]] = defaultdict(list)
    for c in curves:
        frames = [f for f in c.frames if f <= budget]
        groups[(c.task, c.reward)].append(RunCurve(c.path, c.task, c.reward, c.seed, "", frames,
                                                   c.success[:len(frames)]))
    with atomic_path(out / OUTPUTS[0]) as tmp:
        _plot([summarise(groups[k]) for k in sorted(groups)], Path(tmp), "success_rate", title or curves[0].grid)
    if agg.get("tasks"):
        with atomic_path(out / OUTPUTS[1]) as tmp:
            _plot_aggregate(agg, Path(tmp))
    elif (out / OUTPUTS[1]).exists():
        (out / OUTPUTS[1]).unlink()  # no aggregate now: a figure from earlier records would be stale
    atomic_write_text(out / OUTPUTS[2], text)
    atomic_write_json(out / OUTPUTS[3], {"grid": curves[0].grid, "budget": budget, "ours": ours, "tasks": rows,
                                         "aggregate": agg, "records": sorted(str(c.path) for c in curves)})
    if readme is not None:
        rl_block(block).write(readme, short)
    return {"rows": rows, "aggregate": agg, "markdown": text, "readme": short, "records": len(curves)}


def readme_block(readme: str | os.PathLike, block: str = "rl-benchmark") -> str:
    """The text of the generated block named ``block`` as the README has it now."""
    return rl_block(block).read(readme)
