"""Video I/O and `diffusion-reward import-videos` on mp4 / gif / PNG-folder fixtures written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion_reward import cli
from diffusion_reward.data.episodes import load_dataset
from diffusion_reward.data.importers import assign_splits, find_clips, import_videos
from diffusion_reward.errors import UserError
from diffusion_reward.utils.video_io import read_video, resize_center_crop, write_video


def moving_square(t: int, h: int, w: int) -> np.ndarray:
    """A bright square sliding right over a dark background: smooth, so lossy codecs keep it."""
    frames = np.full((t, h, w, 3), 30, np.uint8)
    side = min(h, w) // 3
    for i in range(t):
        x = (i * 3) % (w - side)
        frames[i, h // 2 - side // 2: h // 2 + side // 2, x: x + side] = (220, 200, 40)
    return frames


def test_write_read_roundtrip_mp4_and_gif(tmp_path):
    frames = moving_square(6, 48, 80)
    mp4 = write_video(tmp_path / "a.mp4", frames, fps=12)
    back = read_video(mp4)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 6  # lossy, but close
    gif = write_video(tmp_path / "a.gif", frames, fps=12)
    assert read_video(gif).shape == frames.shape
    odd = write_video(tmp_path / "odd.mp4", moving_square(4, 45, 81))
    assert read_video(odd).shape == (4, 45, 81, 3)
    assert read_video(mp4, every=2).shape[0] == 3 and read_video(mp4, max_frames=2).shape[0] == 2


def test_resize_center_crop_keeps_the_centre():
    # A wide frame: red centre square, blue side bands that the crop must remove.
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, :50] = (0, 0, 255)
    frame[:, 150:] = (0, 0, 255)
    frame[:, 50:150] = (255, 0, 0)
    out = resize_center_crop(frame[None].repeat(2, 0), 32)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    assert out[..., 2].max() < 10 and out[..., 0].min() > 245
    tall = resize_center_crop(np.zeros((90, 30, 3), np.uint8), (20, 10))
    assert tall.shape == (20, 10, 3)
    # Antialiased downsampling: a one-pixel checkerboard averages to grey instead of aliasing.
    checker = ((np.indices((128, 128)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    small = resize_center_crop(checker, 16)
    assert abs(float(small.mean()) - 127.5) < 3 and small.std() < 3


@pytest.fixture()
def clips(tmp_path) -> Path:
    src = tmp_path / "robot_clips"
    src.mkdir()
    write_video(src / "take1.mp4", moving_square(8, 60, 100))
    write_video(src / "take2.gif", moving_square(5, 40, 40))
    seq = src / "take3"
    seq.mkdir()
    for i, frame in enumerate(moving_square(4, 30, 50)):
        Image.fromarray(frame).save(seq / f"frame{i}.png")  # frame10 would sort after frame9
    return src


def test_import_videos_cli(clips, tmp_path):
    out = tmp_path / "ds"
    assert cli.main(["import-videos", str(clips), "--out", str(out), "--image-size", "32", "--test-fraction", "0.34",
                     "--no-progress"]) == 0
    ds = load_dataset(out)
    assert ds.image_size == 32 and ds.tasks == ["robot_clips"]
    assert sorted(e["length"] for e in ds.entries) == [4, 5, 8]
    assert [e["split"] for e in ds.entries].count("test") == 1
    for i, entry in enumerate(ds.entries):
        assert entry["policy"] == "video" and entry["source"] == "video"
        ep = ds[i]
        assert ep.frames.shape[1:] == (32, 32, 3)
        assert ep.actions.shape == (len(ep) - 1, 0)
        assert np.all(np.isnan(ep.rewards)) and np.all(np.isnan(ep.dense))
    # The moving square is still there after resizing: frames differ over time.
    ep = ds[[e["length"] for e in ds.entries].index(8)]
    assert np.abs(ep.frames[0].astype(int) - ep.frames[-1]).mean() > 5
    # Re-running imports nothing new.
    assert cli.main(["import-videos", str(clips), "--out", str(out), "--image-size", "32", "--no-progress"]) == 0
    assert len(json.loads((out / "manifest.json").read_text())["episodes"]) == 3
    # A different image size cannot go into the same dataset.
    assert cli.main(["import-videos", str(clips), "--out", str(out), "--no-progress"]) == 2


def test_task_name_and_loose_frames_folder(tmp_path):
    seq = tmp_path / "frames"
    seq.mkdir()
    for i, frame in enumerate(moving_square(12, 32, 32)):
        Image.fromarray(frame).save(seq / f"{i}.jpg")
    assert find_clips(seq) == [seq]
    report = import_videos(seq, tmp_path / "ds", task="bowl-pickup", test_fraction=0.0, progress=False)
    (entry,) = report.written
    assert entry["task"] == "bowl-pickup" and entry["length"] == 12 and entry["split"] == "train"
    # Natural order: frame 2 comes before frame 10 (the square moves right over time).
    ep = load_dataset(tmp_path / "ds")[0]
    cols = [np.flatnonzero(f[..., 2].max(0) < 100).min() for f in ep.frames]
    assert cols == sorted(cols)


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["import-videos", str(tmp_path / "empty"), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "empty") in err and "no video files" in err and len(err.strip().splitlines()) == 1


def test_bad_clips_error_or_are_skipped(clips, tmp_path, capsys):
    (clips / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    write_video(clips / "short.mp4", moving_square(2, 32, 32))
    out = tmp_path / "ds"
    assert cli.main(["import-videos", str(clips), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "broken.mp4" in err and len(err.strip().splitlines()) == 1
    # What was imported before the bad clip is kept (clips go in natural order: broken, short, take1...).
    report = import_videos(clips, out, skip_bad=True, progress=False)
    skipped = dict(report.skipped)
    assert set(Path(p).name for p in skipped) == {"broken.mp4", "short.mp4"}
    assert "fewer than --min-frames 3" in skipped[str(clips / "short.mp4")]
    assert len(load_dataset(out)) == 3
    # With --min-frames 2 the short clip is fine.
    assert cli.main(["import-videos", str(clips), "--out", str(out), "--min-frames", "2", "--skip-bad",
                     "--no-progress"]) == 0
    assert len(load_dataset(out)) == 4


def test_corrupt_episode_in_dataset_is_named_when_read(clips, tmp_path, capsys):
    out = tmp_path / "ds"
    import_videos(clips, out, progress=False)
    ds = load_dataset(out)
    bad = ds.path(0)
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(UserError, match=str(bad)):
        load_dataset(out)[0]
    assert cli.main(["import-videos", str(clips), "--out", str(out), "--no-progress"]) == 2
    assert str(bad) in capsys.readouterr().err
    report = import_videos(clips, out, skip_bad=True, progress=False)
    assert len(report.bad_existing) == 1 and str(bad) in report.bad_existing[0]
    assert len(report.written) == 1  # the clip behind the bad file is imported again
    assert load_dataset(out).validate() == []


def test_assign_splits():
    assert assign_splits(10, 0.2, 0).count("test") == 2
    assert assign_splits(2, 0.1, 0).count("test") == 1
    assert assign_splits(1, 0.5, 0) in (["train"], ["test"])
    assert assign_splits(5, 0.0, 0).count("test") == 0
    assert assign_splits(10, 0.3, 1) == assign_splits(10, 0.3, 1)
    with pytest.raises(UserError):
        assign_splits(3, 1.5, 0)
