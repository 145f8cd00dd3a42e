"""``diffusion-reward collect``: episodes from simulated tasks (experts, random, noisy), on every core."""

from __future__ import annotations

import argparse

from diffusion_reward.config import add_config_args, config_from_args
from diffusion_reward.utils.logging import get_logger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diffusion_reward.data.collect import CollectConfig

    parser.description = (
        "Collect episodes (frames, actions, sparse and dense rewards, success, states) from simulated tasks "
        "into a dataset, one worker process per core. Expert episodes are kept only when they succeed "
        "(failed ones are retried with new seeds). Re-running the same command resumes: episodes already in "
        "the dataset are skipped.")
    parser.epilog = (
        "examples:\n"
        "  diffusion-reward collect --suite metaworld-paper --episodes 20 --test-episodes 5 --out data/mw\n"
        "  diffusion-reward collect --suite metaworld-paper --policy random noisy:0.1 noisy:0.3 "
        "--episodes 0 --test-episodes 5 --out data/mw")
    parser.add_argument("--out", required=True, metavar="DATASET",
                        help="dataset directory to create or extend")
    add_config_args(parser, CollectConfig)
    parser.add_argument("--skip-bad", action="store_true",
                        help="when an episode file already in the dataset is unreadable, report it and collect it "
                             "again instead of stopping with an error")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.data.collect import CollectConfig, collect, format_failed

    log = get_logger()
    config = config_from_args(CollectConfig, args)
    report = collect(config, args.out, skip_bad=args.skip_bad, progress=args.progress, log=log.warning)
    for line in report.table().splitlines():
        log.info(line)
    if report.failed:
        log.warning(f"{len(report.failed)} expert episode(s) never succeeded and were left out:")
        for line in format_failed(report):
            log.warning(f"  {line}")
    log.info(f"dataset: {args.out}")
    return 0
