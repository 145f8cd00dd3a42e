"""Suite-wide settings, applied before any test module imports torch."""

import os

import pytest

# Passive OpenMP waiting, as the command line sets it: spinning threads make PyTorch ~10x slower
# whenever another process (a renderer worker, a subprocess under test) shares the two cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture
def tiny_diffusion_reward(tmp_path):
    """``build(data) -> reward directory``: a tiny codec and VQ-Diffusion trained on ``data`` and a diffusion
    reward fitted on them, through the real commands (a few steps each; run directories under ``tmp_path``)."""
    from diffusion_reward import cli

    def build(data):
        codec, video, reward = (tmp_path / name for name in ("codec", "video", "reward"))
        quiet = ["--no-tensorboard", "--no-progress", "--threads", "1"]
        assert cli.main(["train-codec", "--data", str(data), "--preset", "tiny", "--steps", "2", "--batch-size", "4",
                         "--eval-frames", "4", "--grid-frames", "2", "--run-dir", str(tmp_path / "codec-run"),
                         "--out", str(codec), *quiet]) == 0
        assert cli.main(["train-video", "--codec", str(codec), "--data", str(data), "--preset", "tiny", "--steps",
                         "2", "--batch-size", "4", "--eval-windows", "4", "--run-dir", str(tmp_path / "video-run"),
                         "--out", str(video), *quiet]) == 0
        assert cli.main(["fit-reward", "--kind", "diffusion", "--video", str(video), "--data", str(data),
                         "--out", str(reward)]) == 0
        return reward

    return build
