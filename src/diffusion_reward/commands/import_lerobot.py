"""``diffusion-reward import-lerobot DIR --camera KEY --out DATASET``: a local LeRobot dataset -> a dataset."""

from __future__ import annotations

import argparse

from diffusion_reward.commands._importing import add_dataset_options, log_report
from diffusion_reward.utils.logging import get_logger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Turn one camera of a local LeRobot dataset (format v2.1 or v3.0: meta/info.json, parquet tables, one MP4 "
        "stream per camera) into an episode dataset: one episode per LeRobot episode, named after its task in the "
        "dataset's task table, no actions, unknown rewards, frames centre-cropped and resized as import-videos "
        "does. Nothing is downloaded. Episodes already imported from this dataset and camera are skipped, so "
        "re-running resumes. Import each camera into its own dataset.")
    parser.epilog = (
        "examples:\n"
        "  diffusion-reward import-lerobot ~/.cache/huggingface/lerobot/me/pick_cube "
        "--camera observation.images.front --out data/pick_cube_front\n"
        "  diffusion-reward import-lerobot recordings/so100_towel --camera wrist --task fold-towel --size 96 "
        "--out data/towel_wrist")
    parser.add_argument("source", metavar="DIR", help="the LeRobot dataset's folder (the one holding meta/info.json)")
    parser.add_argument("--out", required=True, metavar="DATASET", help="dataset directory to create or extend")
    parser.add_argument("--camera", default=None, metavar="KEY",
                        help="video key of the camera to import, e.g. observation.images.front (or just front); "
                             "may be left out when the dataset has a single camera")
    parser.add_argument("--task", default=None,
                        help="task name recorded for every episode (default: each episode's task from the "
                             "dataset's task table)")
    parser.add_argument("--image-size", "--size", dest="image_size", type=int, default=64, metavar="PIXELS",
                        help="side of the square frames stored in the dataset (default: 64)")
    parser.add_argument("--policy", default="video",
                        help="policy name recorded for these episodes; 'video' counts as expert demonstrations "
                             "(default: video)")
    parser.add_argument("--episodes", type=int, default=None, metavar="N",
                        help="import only the first N episodes (default: all)")
    add_dataset_options(parser, "episodes")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip episodes whose files are unreadable or whose video is shorter than their "
                             "timestamps (and unreadable episodes already in the dataset) and report them, instead "
                             "of stopping at the first")


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.data.lerobot_import import import_lerobot

    report = import_lerobot(args.source, args.out, camera=args.camera, task=args.task, image_size=args.image_size,
                            policy=args.policy, test_fraction=args.test_fraction, min_frames=args.min_frames,
                            every=args.every, max_frames=args.max_frames, max_episodes=args.episodes,
                            seed=args.seed, skip_bad=args.skip_bad, progress=args.progress, log=get_logger().warning)
    return log_report(report, args.out)
