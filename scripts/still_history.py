"""Is the entropy reward of an unseen task low because of what the scene looks like rather than how it moves?

For each task, expert and random test episodes are scored twice by a diffusion reward model: as they
are (reward ``j`` from the history ``j-1, j``) and with a *still* history (the same frame ``j`` twice,
as if nothing had moved). The still score measures how sure the model is about a scene of that
appearance; the difference ``as-is minus still`` keeps what the motion adds. Printed per task: the
AUROC of expert against random for the reward as it is, for the still score, and for the difference.

    python scripts/still_history.py pretrained/metaworld-small/reward-entropy --data data/mw data/mw-unseen \\
        --episodes 6 > still_history.jsonl

The still history is made by repeating every frame (``f0 f0 f1 f1 ...``): reward ``2j+1`` of that
sequence is conditioned on ``(f_j, f_j)``. Its sampling noise is drawn for another step index than
the as-is reward's, so the two scores have independent noise. One JSON line per task on stdout; a table
on stderr. Raw rewards (nats per frame, no standardization: AUROC does not depend on it).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from diffusion_reward.data.episodes import load_dataset
from diffusion_reward.evaluation.reward_quality import auroc
from diffusion_reward.rewards.base import load_reward_model
from diffusion_reward.utils.provenance import code_version, directory_fingerprint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="diffusion reward model directory")
    parser.add_argument("--data", nargs="+", required=True, help="datasets with test-split expert and random episodes")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks to measure (default: every task of the data)")
    parser.add_argument("--episodes", type=int, default=6, help="episodes per task and policy (default: 6)")
    args = parser.parse_args(argv)
    model = load_reward_model(args.model)
    provenance = {"model": args.model, "fingerprint": directory_fingerprint(args.model), "code": code_version()}
    data = load_dataset(args.data).select(split="test")
    tasks = args.tasks or sorted({e["task"] for e in data.entries})
    print(f"{'task':22s} {'seen':>5s} {'as-is':>7s} {'still':>7s} {'as-is - still':>14s}", file=sys.stderr)
    for task in tasks:
        means: dict[str, dict[str, list[float]]] = {}
        for policy in ("expert", "random"):
            for episode in data.select(task=task, policy=policy).limit(args.episodes):
                frames = episode.frames
                as_is = model.rewards(frames, raw=True)
                still = model.rewards(np.repeat(frames, 2, axis=0), raw=True)[1::2]
                for name, values in (("as_is", as_is), ("still", still), ("difference", as_is - still)):
                    means.setdefault(name, {}).setdefault(policy, []).append(float(np.mean(values[1:])))
        row = {"task": task, "seen": task in model.task_stats, "episodes": args.episodes, **provenance,
               **{f"auroc_{name}": auroc(m["expert"], m["random"]) for name, m in means.items()},
               **{f"mean_{name}_{policy}": float(np.mean(v)) for name, m in means.items() for policy, v in m.items()}}
        print(json.dumps(row), flush=True)
        print(f"{task:22s} {str(row['seen']):>5s} {row['auroc_as_is']:7.2f} {row['auroc_still']:7.2f} "
              f"{row['auroc_difference']:14.2f}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
