"""``diffusion-reward demo``: the whole pipeline on a few MetaWorld tasks, ending in a report."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from diffusion_reward.config import add_config_args
    from diffusion_reward.demo import DemoConfig

    p.add_argument("--quick", action="store_true",
                   help="the small version (one task, tiny models, short RL): about 2 minutes on two CPU cores")
    p.add_argument("--out", default="runs/demo", help="demo directory (stages are cached there)")
    p.add_argument("--fresh", action="store_true", help="delete the demo directory and start over")
    add_config_args(p, DemoConfig)


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.config import config_from_args
    from diffusion_reward.demo import PRESETS, DemoConfig, run_demo

    config = config_from_args(DemoConfig, args, base=PRESETS["quick" if args.quick else "full"])
    out = args.out if args.out != "runs/demo" or not args.quick else "runs/demo-quick"
    html = run_demo(config, out, fresh=args.fresh, announce=lambda m: print(f"[demo] {m}", flush=True))
    print(f"[demo] open {html} (or {html.with_suffix('.md')})")
    return 0
