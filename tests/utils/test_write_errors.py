"""A full disk or a read-only place: one line naming the path, and what was there before stays intact."""

from __future__ import annotations

import errno
import tempfile

import pytest

from diffusion_reward import cli
from diffusion_reward.utils import checkpoint
from diffusion_reward.utils.checkpoint import WriteError, atomic_write_json, read_json


def test_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    atomic_write_json(path, {"old": 1})

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "replace", full)
    with pytest.raises(WriteError, match=rf"{path}: cannot write here: the disk is full"):
        atomic_write_json(path, {"new": 2})
    monkeypatch.undo()
    assert read_json(path) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_read_only_place_is_one_clear_error(tmp_path, monkeypatch):
    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", read_only)
    with pytest.raises(WriteError, match="the location is read-only"):
        checkpoint.save_tensors(tmp_path / "w.safetensors", {})


def test_the_command_line_prints_one_line_for_a_write_into_a_full_disk(tmp_path, monkeypatch, capsys):
    import numpy as np

    from diffusion_reward.data.episodes import DatasetWriter, Episode

    data = tmp_path / "data"
    DatasetWriter(data, {"image_size": 8}).add(Episode(frames=np.zeros((3, 8, 8, 3), np.uint8)), task="reach-v3",
                                               policy="expert", split="train")
    before = (data / "manifest.json").read_text()
    real = tempfile.mkstemp

    def full(*args, **kwargs):
        if kwargs.get("dir") and str(kwargs["dir"]).startswith(str(data)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    import imageio.v3 as iio

    clip = tmp_path / "clips" / "clip0"
    clip.mkdir(parents=True)
    for i in range(4):
        iio.imwrite(clip / f"{i:03d}.png", np.full((16, 16, 3), 40 * i, np.uint8))
    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", full)
    code = cli.main(["import-videos", str(tmp_path / "clips"), "--task", "reach-v3", "--out", str(data),
                     "--image-size", "8", "--no-progress"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert code == 2 and len(err) == 1, err
    assert f"{data}/" in err[0] and "the disk is full" in err[0]
    assert (data / "manifest.json").read_text() == before
    assert not [p for p in data.rglob("*.tmp")]
