"""Figures: reward along the episode (expert vs others), learning curves, image grids."""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


POLICY_COLOURS = {"expert": "tab:green", "random": "tab:red"}


def _policy_order(policy: str) -> tuple[int, float]:
    if policy == "expert":
        return (0, 0.0)
    if policy.startswith("noisy:"):
        try:
            return (1, float(policy.split(":", 1)[1]))
        except ValueError:
            return (1, math.inf)
    return (2, 0.0)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average (NaN-aware) over ``window`` steps; ``window <= 1`` returns the input."""
    window = min(window, len(values))
    if window <= 1:
        return values
    kernel = np.ones(window)
    ok = np.isfinite(values)
    num = np.convolve(np.where(ok, values, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def plot_reward_curves(curves: Mapping[str, Mapping[str, Sequence[Sequence[float]]]], path: str | os.PathLike,
                       title: str = "", policies: Sequence[str] | None = None, smoothing: int = 5) -> None:
    """One panel per task: mean reward along the episode per policy, with a +-1 std band.

    ``curves[task][policy]`` is a list of per-step reward arrays (episodes may differ in length;
    the mean at step j uses the episodes that reach j). Each episode is smoothed with a centred
    moving average of ``smoothing`` steps before averaging (1: raw).
    """
    plt = _pyplot()
    tasks = sorted(curves)
    cols = min(4, max(1, len(tasks)))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    cmap = plt.get_cmap("Blues")  # noisy experts: darker = noisier, apart from expert green and random red
    for ax, task in zip(axes.flat, tasks):
        names = sorted(curves[task], key=_policy_order)
        if policies is not None:
            names = [p for p in names if p in policies]
        noisy = [p for p in names if p.startswith("noisy:")]
        for p in names:
            eps = [np.asarray(e, dtype=np.float64) for e in curves[task][p]]
            length = max(len(e) for e in eps)
            stack = np.full((len(eps), length), np.nan)
            for i, e in enumerate(eps):
                stack[i, : len(e)] = smooth(e, smoothing)
            mean, std = np.nanmean(stack, 0), np.nanstd(stack, 0)
            colour = POLICY_COLOURS.get(p) or (cmap(0.4 + 0.5 * noisy.index(p) / max(1, len(noisy) - 1))
                                               if p in noisy else "tab:gray")
            x = np.arange(length)
            ax.plot(x, mean, color=colour, label=f"{p} (n={len(eps)})", lw=1.5)
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    if title:
        import textwrap

        fig.suptitle("\n".join(textwrap.wrap(title, width=int(48 * cols))), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike,
                         xlabel: str = "environment frames", ylabel: str = "success rate", title: str = "") -> None:
    """Lines of ``ylabel`` against ``xlabel``; ``series[name] = (x, y)``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
