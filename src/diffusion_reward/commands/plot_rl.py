"""``diffusion-reward plot-rl``: compare train-rl runs (rewards x seeds) in one figure and one table."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", metavar="RUN_DIR", nargs="+",
                   help="train-rl run directories, or folders holding them (runs/rl takes every run inside); "
                        "runs are grouped by their task and reward, and their seeds averaged")
    p.add_argument("--out", default="runs/rl-comparison",
                   help="directory for rl_comparison.png, .md and .json (default: runs/rl-comparison)")
    p.add_argument("--metric", choices=["success_rate", "episode_return"], default="success_rate",
                   help="evaluation metric to plot and tabulate (default: success_rate)")
    p.add_argument("--title", default="", help="figure title (default: none)")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.evaluation.rl_comparison import OUTPUTS, compare_runs

    result = compare_runs(args.runs, args.out, metric=args.metric, title=args.title)
    if result["skipped"]:
        print(f"left out {len(result['skipped'])} file(s) that are not run directories: "
              f"{', '.join(result['skipped'])}")
    for row in result["rows"]:
        print(f"{row['task']:<24} {row['reward']:<10} {len(row['seeds'])} seed(s), {row['last_frames']} frames: "
              f"final {args.metric} {row['final_mean']:.2f} [{row['final_min']:.2f}, {row['final_max']:.2f}], "
              f"best mean {row['best_mean']:.2f}")
    print(f"wrote {', '.join(OUTPUTS)} to {args.out}")
    return 0
