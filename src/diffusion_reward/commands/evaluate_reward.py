"""``diffusion-reward evaluate-reward``: compare reward models on expert, noisy and random episodes."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", nargs="+", default=None, metavar="[NAME=]DIR",
                   help="reward model directories to compare, optionally named (entropy=runs/r1); required unless "
                        "--from-results")
    p.add_argument("--data", nargs="+", default=None,
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
    p.add_argument("--results", default=None, metavar="FILE.json",
                   help="also write the result record (the JSON: every metric per task and model, the model "
                        "fingerprints, episode counts, code version, machine) to this file, e.g. under "
                        "benchmarks/results/ to commit it")
    p.add_argument("--readme", default=None, metavar="README.md",
                   help="replace the reward-quality block of this Markdown file with the summary table")
    p.add_argument("--readme-block", default="reward-quality", metavar="NAME",
                   help="which generated block of --readme to replace: the lines <!-- NAME: ... --> and "
                        "<!-- /NAME --> (one block per suite, e.g. reward-quality-adroit)")
    p.add_argument("--from-results", nargs="+", default=None, metavar="FILE.json",
                   help="score nothing: read result records written before (--results) and only write the "
                        "tables (--out), the --readme block and, with --results, the record from them; several "
                        "records of the same models on different tasks (say training and unseen tasks, scored "
                        "apart) are merged into one")
    p.add_argument("--full-table-link", default=None, metavar="PATH",
                   help="where the README block links the full per-task table (default: the --out folder's "
                        "reward_quality.md)")
    p.epilog = ("examples:\n"
                "  diffusion-reward evaluate-reward --model entropy=runs/reward viper=runs/viper --data data/mw\n"
                "  diffusion-reward evaluate-reward --model entropy=pretrained/metaworld-small/reward-entropy "
                "--data data/mw \\\n      --out docs/images/reward-quality --results "
                "benchmarks/results/reward_quality/metaworld-small.json --readme README.md\n"
                "  diffusion-reward evaluate-reward --from-results benchmarks/results/reward_quality/metaworld-small.json "
                "\\\n      benchmarks/results/reward_quality/metaworld-small-unseen.json --out docs/images/reward-quality "
                "--readme README.md")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.errors import UserError
    from diffusion_reward.evaluation.reward_quality import (markdown_table, merge_results, read_results, readme_block,
                                                             readme_markdown)
    from diffusion_reward.utils.checkpoint import atomic_write_json, atomic_write_text

    if args.from_results is not None:
        if args.model or args.data:
            raise UserError("--from-results reads a result record instead of scoring; drop --model and --data")
        record = merge_results([read_results(path) for path in args.from_results], args.from_results)
        table = markdown_table(record)
        atomic_write_text(Path(args.out) / "reward_quality.md", table)
        print(table)
    else:
        if not args.model or not args.data:
            raise UserError("--model and --data are required (or --from-results FILE.json)")
        record = _evaluate(args)
    if args.results is not None:
        atomic_write_json(args.results, record)
        print(f"wrote the result record {args.results}")
    if args.readme is not None:
        link = args.full_table_link or str(Path(args.out) / "reward_quality.md")
        readme_block(args.readme_block).write(args.readme, readme_markdown(record, full_table=link))
        print(f"wrote the {args.readme_block} block of {args.readme}")
    return 0


def _evaluate(args: argparse.Namespace) -> dict:
    from diffusion_reward.data.episodes import load_dataset
    from diffusion_reward.errors import UserError
    from diffusion_reward.evaluation.reward_quality import evaluate_and_write
    from diffusion_reward.rewards import load_reward_model
    from diffusion_reward.rewards.motion import MotionReward
    from diffusion_reward.utils.provenance import code_version, directory_fingerprint, machine

    models, directories = {}, {}
    for spec in args.model:
        name, _, path = spec.rpartition("=")
        name = name or Path(path).name
        if name in models:
            raise UserError(f"two reward models are named {name!r}; name them with NAME=DIR")
        models[name] = load_reward_model(path, device=args.device)
        directories[name] = path
    if not args.no_motion:
        models.setdefault("motion", MotionReward())
    dataset = load_dataset(args.data, skip_bad=args.skip_bad).select(split=args.split, task=args.task)
    dataset = dataset.limit(args.max_episodes)
    if len(dataset) == 0:
        raise UserError(f"{', '.join(args.data)}: no {args.split}-split episodes to evaluate on")
    for name, model in models.items():
        model.check_dataset_cameras(dataset.cameras, where=f"{name} ({directories.get(name, 'built in')})")
    run_info = {"models": directories, "fingerprints": {n: directory_fingerprint(d) for n, d in directories.items()},
                "data": list(args.data), "split": args.split, "task": args.task, "max_episodes": args.max_episodes,
                "device": args.device, "code": code_version(), "machine": machine()}
    result = evaluate_and_write(models, dataset, Path(args.out), run=run_info)
    print(result["table"])
    if dataset.skipped:
        print(f"skipped {len(dataset.skipped)} unreadable episode(s):\n  " + "\n  ".join(dataset.skipped))
    print(f"wrote {args.out}/reward_quality.md, reward_quality.json, reward_curves*.png")
    return result["record"]
