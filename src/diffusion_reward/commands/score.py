"""``diffusion-reward score``: per-step rewards of a video file, a PNG-sequence folder or a dataset."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR", help="reward model directory (fit-reward or save_pretrained)")
    p.add_argument("source", metavar="VIDEO_OR_DATASET",
                   help="a video file (mp4, webm, gif, ...), a folder of PNG/JPG frames, or an episode dataset")
    p.add_argument("--out", default=None,
                   help="output directory for rewards.csv and rewards.png (default: runs/score/<source name>)")
    p.add_argument("--task", nargs="+", default=None, help="dataset only: score only these tasks")
    p.add_argument("--policy", nargs="+", default=None, help="dataset only: score only these policies")
    p.add_argument("--split", choices=["train", "test"], default=None, help="dataset only: score only this split")
    p.add_argument("--max-episodes", type=int, default=None, help="dataset only: score at most this many episodes")
    p.add_argument("--raw", action="store_true", help="write the model's raw reward instead of the standardized one")
    p.add_argument("--stats-task", default=None, metavar="TASK",
                   help="standardize with the expert statistics of this task (default: a dataset episode's own "
                        "task; for a video, or a task the model has none for, the statistics pooled over its tasks)")
    p.add_argument("--every", type=int, default=1, help="video only: keep every k-th frame (to match a control rate)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _load_clips(args: argparse.Namespace, model: Any) -> list[tuple[str, str, str, object]]:
    from diffusion_reward.data.episodes import MANIFEST, load_dataset
    from diffusion_reward.errors import UserError
    from diffusion_reward.utils.video_io import read_image_sequence, read_video, resize_center_crop

    source = Path(args.source)
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    if (source / MANIFEST).is_file():
        ds = load_dataset(source).select(task=args.task, policy=args.policy, split=args.split)
        model.check_dataset_cameras(ds.cameras, where=str(args.model))
        clips = []
        for i, ep in enumerate(ds):
            if args.max_episodes is not None and i >= args.max_episodes:
                break
            clips.append((Path(ep.info["file"]).stem, ep.info["task"], ep.info["policy"], ep.frames))
        if not clips:
            raise UserError(f"{source}: no episodes match the filters")
        return clips
    frames = read_image_sequence(source) if source.is_dir() else read_video(source, every=args.every)
    size = model.image_size
    if size is not None and frames.shape[1:3] != (size, size):
        frames = resize_center_crop(frames, size)
    return [(source.stem, "video", "video", frames)]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from diffusion_reward.evaluation.plots import plot_reward_curves
    from diffusion_reward.rewards import load_reward_model
    from diffusion_reward.utils.checkpoint import atomic_path
    from diffusion_reward.utils.progress import progress_bar

    model = load_reward_model(args.model, device=args.device)
    clips = _load_clips(args, model)
    out = Path(args.out or Path("runs") / "score" / Path(args.source).stem)
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    with progress_bar("scoring", len(clips), unit="episode") as advance:
        for name, task, policy, frames in clips:
            r = model.rewards(frames, raw=args.raw, task=args.stats_task or (None if task == "video" else task))
            rows += [(name, task, policy, j, float(v)) for j, v in enumerate(r)]
            curves.setdefault(task, {}).setdefault(policy, []).append(r.tolist())
            advance(1)
    with atomic_path(out / "rewards.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", "task", "policy", "step", "reward"])
        w.writerows(rows)
    plot_reward_curves(curves, out / "rewards.png", title=f"{model.kind} reward: {Path(args.source).name}")
    means = [float(np.mean(c)) for pol in curves.values() for eps in pol.values() for c in eps]
    print(f"scored {len(clips)} clip(s), {len(rows)} frames; mean reward per clip "
          f"{np.mean(means):.3f} (min {np.min(means):.3f}, max {np.max(means):.3f})")
    print(f"wrote {out / 'rewards.csv'} and {out / 'rewards.png'}")
    return 0
