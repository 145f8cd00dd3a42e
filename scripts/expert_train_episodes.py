"""Copy a dataset's expert train-split episodes (and a manifest of them) into a folder of their own: the
expert data AMP's discriminator learns from in RL, shipped beside the pretrained reward models.

    python scripts/expert_train_episodes.py SOURCE_DATASET TARGET_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from diffusion_reward.data.episodes import DatasetWriter
from diffusion_reward.utils.checkpoint import read_json


def main(source: Path, target: Path) -> int:
    manifest = read_json(source / "manifest.json")
    keep = [e for e in manifest["episodes"] if e["split"] == "train" and e["policy"] == "expert"]
    if not keep:
        print(f"{source}: no expert train-split episodes to copy", file=sys.stderr)
        return 2
    attributes = {k: v for k, v in manifest.items() if k not in ("episodes", "format", "format_version")}
    writer = DatasetWriter(target, attributes)
    for entry in keep:
        (target / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / entry["file"], target / entry["file"])
    writer.update(lambda episodes: episodes + keep)
    print(f"{len(keep)} expert train episodes -> {target}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
