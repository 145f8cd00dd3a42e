"""``diffusion-reward plot-rl``: tables and figures of RL runs, or the RL benchmark's report from its records."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Two uses. Given benchmark-rl records (JSON files, or folders holding them such as "
        "benchmarks/results/rl/metaworld-state-small), write the benchmark's report: per task and reward the "
        "success at the budget, frames to success >= 0.8, area under the success curve and the simulator's dense "
        "reward; over all tasks and seeds the interquartile mean with 95%% bootstrap intervals and the probability "
        "of improvement (rliable); success curves and the interval plot. Given train-rl run directories, compare "
        "them: success against frames per task and reward, seeds averaged.")
    p.epilog = ("examples:\n"
                "  diffusion-reward plot-rl benchmarks/results/rl/metaworld-state-small --out docs/images/rl "
                "--readme README.md\n"
                "  diffusion-reward plot-rl benchmarks/results/rl/adroit-state-small --out docs/images/rl-adroit "
                "--readme README.md --readme-block rl-benchmark-adroit\n"
                "  diffusion-reward plot-rl runs/rl --out runs/rl-comparison")
    p.add_argument("runs", metavar="PATH", nargs="+",
                   help="benchmark-rl records or folders of them; or train-rl run directories, or folders holding "
                        "them (runs are grouped by their task and reward, and their seeds averaged)")
    p.add_argument("--out", default="runs/rl-comparison",
                   help="directory for the figures and tables (default: runs/rl-comparison)")
    p.add_argument("--metric", choices=["success_rate", "episode_return"], default="success_rate",
                   help="run directories: evaluation metric to plot and tabulate (default: success_rate)")
    p.add_argument("--title", default="", help="figure title (default: none, or the grid's name)")
    bench = p.add_argument_group("benchmark records")
    bench.add_argument("--budget", type=int, default=None, metavar="FRAMES",
                       help="frames at which cells are compared (default: the cells' budget); records that stop "
                            "earlier are left out")
    bench.add_argument("--ours", default="diffusion", metavar="REWARD",
                       help="the reward whose probability of improving on each other reward is reported "
                            "(default: diffusion)")
    bench.add_argument("--bootstrap-reps", type=int, default=2000, metavar="N",
                       help="stratified-bootstrap resamples of the intervals (default: 2000; seeded, so the "
                            "report is the same every time)")
    bench.add_argument("--readme", default=None, metavar="README.md",
                       help="also replace the generated RL block of this README with the tables and figure links")
    bench.add_argument("--readme-block", default="rl-benchmark", metavar="NAME",
                       help="which generated block of --readme to replace: the lines <!-- NAME: ... --> and "
                            "<!-- /NAME --> (default: rl-benchmark, MetaWorld's grid; rl-benchmark-adroit for "
                            "Adroit's)")
    bench.add_argument("--figures-link", default=None, metavar="PATH",
                       help="how the README links to --out (default: --out as given)")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.evaluation.rl_benchmark import OUTPUTS as BENCH_OUTPUTS
    from diffusion_reward.evaluation.rl_benchmark import benchmark_report, find_records
    from diffusion_reward.evaluation.rl_comparison import OUTPUTS, compare_runs

    if find_records(args.runs):
        report = benchmark_report(args.runs, args.out, ours=args.ours, budget=args.budget, reps=args.bootstrap_reps,
                                  readme=args.readme, figures_link=args.figures_link, title=args.title,
                                  block=args.readme_block)
        print(report["markdown"])
        written = [name for name in BENCH_OUTPUTS if (Path(args.out) / name).exists()]
        print(f"{report['records']} records; wrote {', '.join(written)} to {args.out}"
              + (f" and the {args.readme_block} block of {args.readme}" if args.readme else ""))
        return 0
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
