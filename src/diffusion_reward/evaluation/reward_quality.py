"""How much a reward model can be trusted, measured on held-out episodes of known quality.

For each task and each reward model, on test-split episodes of the expert, of noisy experts
(``noisy:<std>``) and of a random policy:

- ``auroc_random``: probability that an expert episode gets a higher episode-mean reward than a
  random one (1 = perfect separation, 0.5 = chance); ``auroc_noisy:<std>`` the same against each
  noise level. Episode *means* are used rather than sums because experts may stop early.
- ``spearman_quality``: Spearman correlation between policy quality (expert > increasing noise
  > random, as ranks) and episode-mean reward; good rewards are strongly positive. (The issue's
  "reward falls as noise grows" is the same number with the sign of the noise axis.)
  ``spearman_clear``: the same over the expert, the clearly noisy experts (std >= 0.5) and the
  random policy only; small noise barely changes what MetaWorld's scripted experts do.
- ``spearman_dense``: Spearman correlation between the per-step learned reward and the
  simulator's shaped (dense) reward, pooled over all episodes of the task.
- ``spearman_dense_within``: the same correlation computed inside each expert episode, averaged:
  does the reward rise as the expert makes progress?
- ``voc``: value-order correlation, the offline metric of recent reward-model papers: Spearman
  correlation between the per-step reward and time inside each expert episode, averaged (an
  expert makes progress at every step, so a reward that tracks progress rises along the episode).
- ``frames_per_s``: reward throughput.

Seen and unseen tasks. A task is *seen* when a learned reward model in the comparison has expert
statistics for it (``task_stats``: the tasks of the expert videos it was fitted on); the other
tasks of the data are *unseen* (the paper's zero-shot tasks), and the table marks them. When the
data holds both, every model also gets its mean over each group apart (``mean_seen``,
``mean_unseen``), besides the mean over all tasks.

A reward model here is anything with ``rewards(frames: uint8 (T,H,W,3)) -> float32[T]``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from diffusion_reward.data.episodes import EpisodeDataset
from diffusion_reward.errors import UserError
from diffusion_reward.evaluation.report import GeneratedBlock
from diffusion_reward.rewards.base import RewardModel

NOISY = re.compile(r"^noisy:(?P<std>[0-9.]+)$")
CLEAR_NOISE = 0.5
"""Action-noise std from which a noisy expert counts as clearly worse than the expert (at 0.1-0.3
MetaWorld's scripted experts still succeed most of the time)."""


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Area under the ROC curve of ``positive`` vs ``negative`` scores (ties count one half)."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation; NaN when either side is constant or too short."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def policy_rank(policy: str) -> float | None:
    """Quality order of a policy name: expert 0, noisy:<std> = std, random = +inf; None if unknown."""
    if policy == "expert":
        return 0.0
    if policy == "random":
        return math.inf
    m = NOISY.match(policy)
    return float(m.group("std")) if m else None


@dataclasses.dataclass
class ScoredEpisode:
    task: str
    policy: str
    rewards: np.ndarray
    dense: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.rewards))


def score_dataset(scorer: Any, dataset: EpisodeDataset, progress: Callable[[int], None] | None = None
                  ) -> tuple[list[ScoredEpisode], float]:
    """Score every episode of ``dataset``; returns the scored episodes and frames/s."""
    out, frames, seconds = [], 0, 0.0
    for ep in dataset:
        start = time.perf_counter()
        if isinstance(scorer, RewardModel):  # standardized with the statistics of the episode's task
            r = np.asarray(scorer.rewards(ep.frames, task=ep.info.get("task")), dtype=np.float32)
        else:
            r = np.asarray(scorer.rewards(ep.frames), dtype=np.float32)
        seconds += time.perf_counter() - start
        frames += len(ep.frames)
        if r.shape != (len(ep.frames),):
            raise ValueError(f"{type(scorer).__name__}.rewards returned shape {r.shape} for {len(ep.frames)} frames")
        out.append(ScoredEpisode(ep.info["task"], ep.info["policy"], r, ep.dense))
        if progress is not None:
            progress(1)
    return out, frames / max(seconds, 1e-9)


def task_metrics(scored: Sequence[ScoredEpisode]) -> dict[str, float]:
    """The metrics of one task from its scored episodes (see the module docstring)."""
    by_policy: dict[str, list[ScoredEpisode]] = {}
    for s in scored:
        by_policy.setdefault(s.policy, []).append(s)
    expert = [s.mean for s in by_policy.get("expert", [])]
    metrics: dict[str, float] = {}
    metrics["auroc_random"] = auroc(expert, [s.mean for s in by_policy.get("random", [])])
    noisy = sorted((p for p in by_policy if NOISY.match(p)), key=policy_rank)
    for p in noisy:
        metrics[f"auroc_{p}"] = auroc(expert, [s.mean for s in by_policy[p]])
    ranked = [(policy_rank(s.policy), s.mean) for s in scored if policy_rank(s.policy) is not None]
    for name, keep in (("spearman_quality", lambda r: True), ("spearman_clear", lambda r: r == 0 or r >= CLEAR_NOISE)):
        picked = [(r, m) for r, m in ranked if keep(r)]
        if picked:
            order = sorted({r for r, _ in picked})
            quality = [-order.index(r) for r, _ in picked]  # higher = better policy
            metrics[name] = spearman(quality, [m for _, m in picked])
    # reward j scores reaching frame j; dense[j-1] is the shaped reward of the step into frame j
    pooled_r = np.concatenate([s.rewards[1:] for s in scored]) if scored else np.zeros(0)
    pooled_d = np.concatenate([s.dense for s in scored]) if scored else np.zeros(0)
    metrics["spearman_dense"] = spearman(pooled_r, pooled_d)
    within = [spearman(s.rewards[1:], s.dense) for s in by_policy.get("expert", [])]
    within = [w for w in within if math.isfinite(w)]
    metrics["spearman_dense_within"] = float(np.mean(within)) if within else math.nan
    voc = [spearman(s.rewards[1:], np.arange(1, len(s.rewards))) for s in by_policy.get("expert", [])]
    voc = [v for v in voc if math.isfinite(v)]
    metrics["voc"] = float(np.mean(voc)) if voc else math.nan
    metrics["episodes"] = float(len(scored))
    return metrics


def evaluate_reward_models(scorers: Mapping[str, Any], dataset: EpisodeDataset,
                           progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Score ``dataset`` with every scorer; returns ``{"models": {name: {"tasks": {task: metrics},
    "mean": metrics, "frames_per_s": x}}, "curves": {name: {task: {policy: [reward arrays]}}}}``."""
    seen = sorted({t for scorer in scorers.values() if isinstance(scorer, RewardModel) for t in scorer.task_stats})
    result: dict[str, Any] = {"models": {}, "curves": {}, "seen_tasks": seen}
    for name, scorer in scorers.items():
        scored, fps = score_dataset(scorer, dataset, progress)
        tasks = sorted({s.task for s in scored})
        per_task = {t: task_metrics([s for s in scored if s.task == t]) for t in tasks}
        result["models"][name] = {"tasks": per_task, **task_means(per_task, seen), "frames_per_s": fps}
        curves: dict[str, dict[str, list[list[float]]]] = {}
        for s in scored:
            curves.setdefault(s.task, {}).setdefault(s.policy, []).append(s.rewards.tolist())
        result["curves"][name] = curves
    return result


def task_means(per_task: Mapping[str, Mapping[str, float]], seen: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{"mean": ...}`` over every task of ``per_task``, plus ``"mean_seen"`` and ``"mean_unseen"`` over each group
    apart when it holds tasks of both (NaN metrics are left out of a mean)."""
    keys = sorted({k for m in per_task.values() for k in m})

    def mean_over(group: Sequence[str]) -> dict[str, float]:
        return {k: _nanmean([per_task[t].get(k, math.nan) for t in group]) for k in keys}

    tasks = sorted(per_task)
    out = {"mean": mean_over(tasks)}
    seen_here = [t for t in tasks if t in seen]
    if seen_here and len(seen_here) < len(tasks):
        out["mean_seen"] = mean_over(seen_here)
        out["mean_unseen"] = mean_over([t for t in tasks if t not in seen])
    return out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


SUMMARY_COLUMNS = ("auroc_random", "auroc_noisy", "spearman_quality", "spearman_clear", "spearman_dense",
                   "spearman_dense_within", "voc")


def _row_value(metrics: Mapping[str, float], column: str) -> float:
    if column == "auroc_noisy":  # mean over noise levels
        return _nanmean([v for k, v in metrics.items() if k.startswith("auroc_noisy:")])
    return metrics.get(column, math.nan)


def markdown_table(result: Mapping[str, Any]) -> str:
    """A markdown table: one row per (model, task) plus mean rows per model (over all tasks, and
    over the seen and the unseen tasks apart when there are both; unseen tasks are marked)."""
    header = ["model", "task", *SUMMARY_COLUMNS, "frames/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    fmt = lambda v: "–" if not math.isfinite(v) else f"{v:.2f}"  # noqa: E731
    seen = set(result.get("seen_tasks") or ())
    for name, model in result["models"].items():
        rows = [(task if not seen or task in seen else f"{task} (unseen)", m) for task, m in model["tasks"].items()]
        if "mean_unseen" in model:
            rows += [("**mean, seen tasks**", model["mean_seen"]), ("**mean, unseen tasks**", model["mean_unseen"])]
        rows.append(("**mean**", model["mean"]))
        for task, m in rows:
            cells = [fmt(_row_value(m, c)) for c in SUMMARY_COLUMNS]
            lines.append(f"| {name} | {task} | " + " | ".join(cells) + f" | {model['frames_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def evaluate_and_write(scorers: Mapping[str, Any], dataset: EpisodeDataset, out: os.PathLike | str,
                       run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`evaluate_reward_models` with a progress bar, then write ``reward_quality.md``,
    ``reward_quality.json`` and one reward-along-the-episode figure per model
    (``reward_curves_<name>.png``: expert vs noisy vs random, one panel per task). ``run``
    (what was evaluated: model directories, datasets, split) is stored in the JSON under ``"run"``,
    so a table can be traced back to its inputs."""
    from pathlib import Path

    from diffusion_reward.evaluation.plots import plot_reward_curves
    from diffusion_reward.utils.checkpoint import atomic_write_json, atomic_write_text
    from diffusion_reward.utils.progress import progress_bar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar("scoring episodes", len(dataset) * len(scorers), unit="episode") as advance:
        result = evaluate_reward_models(scorers, dataset, advance)
    table = markdown_table(result)
    atomic_write_text(out / "reward_quality.md", table)
    per_task = episodes_per_policy(dataset)
    record = {"models": result["models"], "seen_tasks": result["seen_tasks"],
              "run": {"episodes": len(dataset), "episodes_per_policy": per_task, **(run or {})}}
    atomic_write_json(out / "reward_quality.json", record)
    figures = {}
    for name, curves in result["curves"].items():
        path = out / f"reward_curves_{re.sub(r'[^A-Za-z0-9_.-]+', '-', name).strip('-')}.png"
        plot_reward_curves(curves, path, title=f"{name}: reward along the episode (mean ± std over episodes, 5-step moving average)")
        figures[name] = str(path)
    return {**result, "record": record, "table": table, "figures": figures}


def episodes_per_policy(dataset: EpisodeDataset) -> dict[str, str]:
    """Episodes per task of each policy, best policy first: ``"20"``, or ``"18-20"`` when tasks differ."""
    counts: dict[str, dict[str, int]] = {}
    for entry in dataset.entries:
        by_task = counts.setdefault(entry["policy"], {})
        by_task[entry["task"]] = by_task.get(entry["task"], 0) + 1
    order = sorted(counts, key=lambda p: (policy_rank(p) is None, policy_rank(p) or 0.0, p))
    out = {}
    for policy in order:
        low, high = min(counts[policy].values()), max(counts[policy].values())
        out[policy] = str(low) if low == high else f"{low}-{high}"
    return out


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """A ``reward_quality.json`` written by :func:`evaluate_and_write`; one line naming the file otherwise."""
    from diffusion_reward.utils.checkpoint import read_json

    try:
        result = read_json(path)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if not isinstance(result, dict) or not isinstance(result.get("models"), dict) or not result["models"]:
        raise UserError(f"{path}: not a reward-quality result (no \"models\"); write one with evaluate-reward")
    return result


def merge_results(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """One result from records of the same reward models on different tasks (say the training tasks and the
    unseen ones, scored in two runs): the tasks of every record side by side, the means over all of them again.
    ``names`` (the records' files) name a record in the one-line errors: when the records' models differ, when a
    model's fingerprint differs between them (not the same model), or when two records hold the same task."""
    if len(records) == 1:
        return dict(records[0])
    first, first_name = records[0], names[0]
    models: dict[str, Any] = {name: {"tasks": {}} for name in first["models"]}
    owner: dict[str, int] = {}
    fingerprints: dict[str, Any] = {}
    for index, (record, name) in enumerate(zip(records, names)):
        if set(record["models"]) != set(models):
            raise UserError(f"{name}: models {sorted(record['models'])}, but {first_name} has {sorted(models)}; "
                            "merge records of the same reward models")
        for model, print_ in (record.get("run", {}).get("fingerprints") or {}).items():
            if fingerprints.setdefault(model, print_) != print_:
                raise UserError(f"{name}: model {model!r} is not the one {first_name} scored (its fingerprint "
                                "differs); score every dataset with the same model directories")
        for model, entry in record["models"].items():
            for task, metrics in entry["tasks"].items():
                if owner.setdefault(task, index) != index:
                    raise UserError(f"{name}: task {task} is also in {names[owner[task]]}; merge records of "
                                    "different tasks")
                models[model]["tasks"][task] = metrics
    seen = sorted({t for record in records for t in record.get("seen_tasks") or ()})
    for model, entry in models.items():
        entry["tasks"] = dict(sorted(entry["tasks"].items()))
        entry.update(task_means(entry["tasks"], seen))
        entry["frames_per_s"] = float(np.mean([r["models"][model]["frames_per_s"] for r in records]))  # runs' mean
    counts: dict[str, list[str]] = {}
    for record in records:
        for policy, n in (record.get("run", {}).get("episodes_per_policy") or {}).items():
            counts.setdefault(policy, []).append(n)
    per_policy = {}
    for policy, ns in counts.items():
        bounds = [int(part) for n in ns for part in str(n).split("-")]
        per_policy[policy] = str(min(bounds)) if min(bounds) == max(bounds) else f"{min(bounds)}-{max(bounds)}"
    run = {"merged_from": list(names), "fingerprints": fingerprints, "episodes_per_policy": per_policy,
           "parts": [dict(record.get("run", {})) for record in records]}
    return {"models": models, "seen_tasks": seen, "run": run}


def ranked_models(result: Mapping[str, Any]) -> dict[str, Any]:
    """The models of a result, best mean AUROC against the random policy first (seen tasks when there are
    unseen ones too); the order does not depend on how the JSON stored them."""
    def score(item: tuple[str, Any]) -> tuple[float, str]:
        value = item[1].get("mean_seen", item[1]["mean"]).get("auroc_random", math.nan)
        return (-value if math.isfinite(value) else math.inf, item[0])

    return dict(sorted(result["models"].items(), key=score))


def readme_block(name: str = "reward-quality") -> GeneratedBlock:
    """The README block ``evaluate-reward --readme`` writes; one per suite (``reward-quality-adroit``, ...)."""
    return GeneratedBlock(name, "generated from the committed results by evaluate-reward --readme")


README_BLOCK = readme_block()


def readme_markdown(result: Mapping[str, Any], full_table: str | None = None) -> str:
    """The README's reward-quality table, models best first (:func:`ranked_models`): the mean of each model over
    the training (seen) tasks, its lowest training task by AUROC against the random policy, and its AUROC means
    over the unseen tasks when the result has some. Every task's row is in the full table (``full_table``)."""
    fmt = lambda v: "-" if v is None or not math.isfinite(v) else f"{v:.2f}"  # noqa: E731
    models = ranked_models(result)
    seen = list(result.get("seen_tasks") or [])
    tasks = sorted({t for m in models.values() for t in m["tasks"]})
    unseen = [t for t in tasks if seen and t not in seen]
    training = [t for t in tasks if t not in unseen]
    episodes = result.get("run", {}).get("episodes_per_policy") or {}
    counts = ", ".join(f"{n} {p}" for p, n in episodes.items()) if episodes else ""
    lines = ["Held-out episodes" + (f" ({counts} per task)" if counts else "")
             + f" of {len(training)} training tasks"
             + (f" and {len(unseen)} unseen tasks, which no model was trained on" if unseen else "")
             + ". AUROC: how often an expert episode's mean reward beats the other policy's (0.5: chance); "
               "Spearman: episode mean reward against policy quality; VOC: reward against time inside expert "
               "episodes. Means over the training tasks" + (", then over the unseen ones" if unseen else "")
             + (f"; [every task]({full_table})." if full_table else "."), ""]
    columns = ["AUROC vs random", "AUROC vs noisy", "Spearman(quality)", "VOC", "lowest task (vs random)"]
    unseen_columns = ["unseen: AUROC vs random", "AUROC vs noisy"] if unseen else []
    lines += ["| reward | " + " | ".join(columns + unseen_columns) + " |",
              "|---|" + "---|" * (len(columns) + len(unseen_columns))]
    for name, model in models.items():
        mean = model.get("mean_seen", model["mean"])
        cells = [fmt(_row_value(mean, c)) for c in ("auroc_random", "auroc_noisy", "spearman_quality", "voc")]
        scores = {t: model["tasks"][t].get("auroc_random", math.nan) for t in training if t in model["tasks"]}
        scores = {t: v for t, v in scores.items() if math.isfinite(v)}
        lowest = min(scores, key=lambda t: (scores[t], t)) if scores else None
        cells.append(f"{scores[lowest]:.2f} {lowest}" if lowest else "-")
        if unseen:
            cells += [fmt(_row_value(model.get("mean_unseen", {}), c)) for c in ("auroc_random", "auroc_noisy")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
