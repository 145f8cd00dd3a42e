"""``diffusion-reward import-videos DIR --out DATASET``: video files or image-sequence folders -> a dataset."""

from __future__ import annotations

import argparse

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
    parser.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                        help="fraction of the clips put in the test split, chosen with --seed (default: 0.2)")
    parser.add_argument("--min-frames", type=int, default=3, metavar="N",
                        help="clips with fewer frames (after --every) are bad input: the video model needs a "
                             "history (default: 3)")
    parser.add_argument("--every", type=int, default=1, metavar="K",
                        help="keep one frame in K, to bring high-frame-rate footage closer to the simulator's "
                             "step rate (default: 1, every frame)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N",
                        help="keep at most N frames per clip (default: all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the train/test assignment (default: 0)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable or too-short clips (and unreadable episodes already in the dataset) "
                             "and report them, instead of stopping at the first")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.data.importers import import_videos

    log = get_logger()
    report = import_videos(args.source, args.out, task=args.task, image_size=args.image_size,
                           test_fraction=args.test_fraction, min_frames=args.min_frames, every=args.every,
                           max_frames=args.max_frames, seed=args.seed, skip_bad=args.skip_bad,
                           progress=args.progress, log=log.warning)
    for line in report.summary().splitlines():
        log.info(line)
    log.info(f"dataset: {args.out}")
    return 0
