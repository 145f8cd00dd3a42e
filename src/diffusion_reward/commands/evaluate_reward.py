"""``diffusion-reward evaluate-reward``: compare reward models on expert, noisy and random episodes."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", nargs="+", required=True, metavar="[NAME=]DIR",
                   help="reward model directories to compare, optionally named (entropy=runs/r1)")
    p.add_argument("--data", nargs="+", required=True,
                   help="episode dataset(s) with test-split episodes of expert, noisy:<std> and random policies; "
                        "tasks the learned models have no expert statistics for (e.g. from collect --suite "
                        "metaworld-unseen) are reported as unseen, with their own mean")
    p.add_argument("--split", default="test", choices=["train", "test"], help="which split to evaluate on")
    p.add_argument("--task", nargs="+", default=None, help="evaluate only these tasks")
    p.add_argument("--max-episodes", type=int, default=None,
                   help="at most this many episodes per task and policy (for quick checks)")
    p.add_argument("--no-motion", action="store_true",
                   help="leave out the motion reference scorer (mean absolute pixel change)")
    p.add_argument("--out", default="runs/evaluate-reward", help="directory for the table, JSON and figures")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable episode files (and report them)")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.data.episodes import load_dataset
    from diffusion_reward.errors import UserError
    from diffusion_reward.evaluation.reward_quality import evaluate_and_write
    from diffusion_reward.rewards import load_reward_model
    from diffusion_reward.rewards.motion import MotionReward

    models, directories = {}, {}
    for spec in args.model:
        name, _, path = spec.rpartition("=")
        name = name or Path(path).name
        if name in models:
            raise UserError(f"two reward models are named {name!r}; name them with NAME=DIR")
        models[name] = load_reward_model(path, device=args.device)
        directories[name] = str(Path(path).resolve())
    if not args.no_motion:
        models.setdefault("motion", MotionReward())
    dataset = load_dataset(args.data, skip_bad=args.skip_bad).select(split=args.split, task=args.task)
    dataset = dataset.limit(args.max_episodes)
    if len(dataset) == 0:
        raise UserError(f"{', '.join(args.data)}: no {args.split}-split episodes to evaluate on")
    for name, model in models.items():
        model.check_dataset_cameras(dataset.cameras, where=f"{name} ({directories.get(name, 'built in')})")
    run_info = {"models": directories, "data": [str(Path(d).resolve()) for d in args.data], "split": args.split,
                "task": args.task, "max_episodes": args.max_episodes, "device": args.device}
    result = evaluate_and_write(models, dataset, Path(args.out), run=run_info)
    print(result["table"])
    if dataset.skipped:
        print(f"skipped {len(dataset.skipped)} unreadable episode(s):\n  " + "\n  ".join(dataset.skipped))
    print(f"wrote {args.out}/reward_quality.md, reward_quality.json, reward_curves*.png")
    return 0
