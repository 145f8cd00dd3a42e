"""``diffusion-reward import-videos DIR --out DATASET``: video files or image-sequence folders -> a dataset."""

from __future__ import annotations

import argparse

from diffusion_reward.commands._importing import add_dataset_options, log_report
from diffusion_reward.utils.logging import get_logger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Turn a folder of video files (mp4, webm, gif, avi, mov, ...) and/or of image-sequence folders "
        "(one folder of png/jpg frames per clip) into an episode dataset: one episode per clip, policy "
        "'video', no actions, unknown rewards, centre-cropped and resized to --image-size. Clips already "
        "in the dataset are skipped, so re-running resumes.")
    parser.add_argument("source", metavar="DIR",
                        help="folder holding the clips (or one video file); a folder of loose frames is one clip")
    parser.add_argument("--out", required=True, metavar="DATASET",
                        help="dataset directory to create or extend")
    parser.add_argument("--task", default=None,
                        help="task name recorded for every clip (default: the folder's name)")
    parser.add_argument("--image-size", type=int, default=64, metavar="PIXELS",
                        help="side of the square frames stored in the dataset (default: 64)")
    add_dataset_options(parser, "clips")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable or too-short clips (and unreadable episodes already in the dataset) "
                             "and report them, instead of stopping at the first")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.data.importers import import_videos

    report = import_videos(args.source, args.out, task=args.task, image_size=args.image_size,
                           test_fraction=args.test_fraction, min_frames=args.min_frames, every=args.every,
                           max_frames=args.max_frames, seed=args.seed, skip_bad=args.skip_bad,
                           progress=args.progress, log=get_logger().warning)
    return log_report(report, args.out)
