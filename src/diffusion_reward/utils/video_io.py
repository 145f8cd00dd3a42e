"""Reading, writing and resizing videos as ``uint8 (T, H, W, 3)`` arrays.

* :func:`read_video` reads a video file (mp4, webm, avi, mov, mkv, gif, ... whatever imageio and its
  bundled ffmpeg can decode) or a folder holding an image sequence (png/jpg/bmp/webp frames,
  ordered by the numbers in their names); :func:`iter_video` decodes a video file frame by frame.
* :func:`write_video` writes mp4 (H.264 through imageio-ffmpeg) and falls back to an animated GIF
  when ffmpeg is unavailable; ``.gif`` paths are always GIFs.
* :func:`resize_center_crop` crops every frame to the target aspect ratio around its centre and
  resamples it with an antialiasing Lanczos filter (the right choice for strong downsampling of
  camera footage).

Every failure to read raises :class:`diffusion_reward.errors.UserError` naming the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from diffusion_reward.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".gif", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".ogv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class VideoError(UserError, ValueError):
    """A video file or image sequence cannot be read; the message names it."""


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _natural_key(name: str) -> list:
    """Sort key that orders ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_sequence(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder``, in natural (numeric-aware) order."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: _natural_key(p.name))


def to_rgb_uint8(frames: np.ndarray, name: str = "video") -> np.ndarray:
    """Bring decoded frames to ``uint8 (T, H, W, 3)``: grey is repeated, alpha dropped, deep colour scaled."""
    frames = np.asarray(frames)
    if frames.ndim == 3:  # (T, H, W) grey
        frames = frames[..., None]
    if frames.ndim != 4:
        raise VideoError(f"{name}: expected frames of shape (T, H, W[, C]), got {frames.shape}")
    channels = frames.shape[-1]
    if channels == 1:
        frames = np.repeat(frames, 3, axis=-1)
    elif channels == 2:  # grey + alpha
        frames = np.repeat(frames[..., :1], 3, axis=-1)
    elif channels == 4:
        frames = frames[..., :3]
    elif channels != 3:
        raise VideoError(f"{name}: frames with {channels} channels are not RGB")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if frames.dtype == np.uint16:
        return (frames.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if frames.dtype == bool:
        return frames.astype(np.uint8) * 255
    if np.issubdtype(frames.dtype, np.floating):
        scale = 255.0 if frames.size and float(np.nanmax(frames)) <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(frames) * scale), 0, 255).astype(np.uint8)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as exc:  # PIL raises many types for bad files
        raise VideoError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def read_image_sequence(folder: str | os.PathLike) -> np.ndarray:
    """Read a folder of frame images as ``uint8 (T, H, W, 3)``; all frames must have one size."""
    folder = Path(folder)
    files = image_sequence(folder)
    if not files:
        raise VideoError(f"{folder}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    frames = []
    for f in files:
        img = _read_image(f)
        if frames and img.shape != frames[0].shape:
            raise VideoError(f"{f}: frame size {img.shape[1]}x{img.shape[0]} differs from the first frame's "
                             f"{frames[0].shape[1]}x{frames[0].shape[0]} in {folder}")
        frames.append(img)
    return np.stack(frames)


def read_video(path: str | os.PathLike, max_frames: int | None = None, every: int = 1) -> np.ndarray:
    """Read a video file or an image-sequence folder as ``uint8 (T, H, W, 3)``.

    ``every`` keeps one frame in ``every`` (temporal subsampling of high-frame-rate footage);
    ``max_frames`` stops after that many kept frames. Raises :class:`VideoError` naming the path
    when it is missing, empty or cannot be decoded.
    """
    path = Path(path)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if path.is_dir():
        frames = read_image_sequence(path)[::every]
        return frames[:max_frames] if max_frames else frames
    if path.exists() and is_image_file(path) and path.stat().st_size:
        return _read_image(path)[None]
    kept: list[np.ndarray] = []
    for i, frame in enumerate(iter_video(path)):
        if i % every:
            continue
        kept.append(frame)
        if max_frames and len(kept) >= max_frames:
            break
    return np.stack(kept)


def iter_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decode a video file one frame at a time, as ``uint8 (H, W, 3)``, in stream order.

    For long files of which only a stretch is wanted (a LeRobot v3 file holds many episodes):
    nothing beyond the current frame is held, and stopping early ends the decoder. Raises
    :class:`VideoError` naming the path when it is missing, empty or cannot be decoded, when it
    holds no frames, or when its frames change size.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty")
    import imageio.v3 as iio

    frames = None
    shape = None
    try:
        frames = iio.imiter(path)
        for frame in frames:
            frame = to_rgb_uint8(np.asarray(frame)[None], str(path))[0]
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise VideoError(f"{path}: frames change size within the video")
            yield frame
    except VideoError:
        raise
    except Exception as exc:  # imageio/ffmpeg/PIL raise many types for undecodable files
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise VideoError(f"{path}: cannot decode video ({type(exc).__name__}: {message})") from None
    finally:
        if frames is not None:
            frames.close()
    if shape is None:
        raise VideoError(f"{path}: video has no frames")


def video_fps(path: str | os.PathLike) -> float | None:
    """The frame rate stored in a video file, or ``None`` when unknown (image sequences, some GIFs)."""
    path = Path(path)
    if path.is_dir():
        return None
    try:
        import imageio.v3 as iio

        meta = iio.immeta(path)
    except Exception:
        return None
    if meta.get("fps"):
        return float(meta["fps"])
    if meta.get("duration"):  # GIF: milliseconds per frame
        return 1000.0 / float(meta["duration"])
    return None


def write_video(path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: float = 10.0,
                quality: int = 8) -> Path:
    """Write ``uint8 (T, H, W, 3)`` frames to ``path``; returns the path actually written.

    ``.mp4`` (and other ffmpeg containers) are H.264 through imageio-ffmpeg at ``quality``
    (0-10); when ffmpeg is not available the frames go to a GIF beside it (same name, ``.gif``).
    The file appears atomically (written to a temporary name, then renamed).
    """
    from diffusion_reward.utils.checkpoint import atomic_path

    path = Path(path)
    frames = to_rgb_uint8(np.asarray(frames), str(path))
    if len(frames) == 0:
        raise ValueError(f"{path}: no frames to write")
    if path.suffix.lower() != ".gif":
        try:
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
        except Exception:
            path = path.with_suffix(".gif")
    if path.suffix.lower() == ".gif":
        _write_gif(path, frames, fps, atomic_path)
        return path
    import imageio.v2 as iio2

    with atomic_path(path) as tmp:
        # imageio picks the container from the extension, so the temporary file keeps it.
        tmp_video = tmp.with_name(tmp.name + path.suffix)
        try:
            # yuv420p (what every player reads) needs even sides; odd sizes keep full chroma instead.
            even = frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
            writer = iio2.get_writer(tmp_video, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                     quality=quality, macro_block_size=1,
                                     pixelformat="yuv420p" if even else "yuv444p", ffmpeg_log_level="error")
            with writer:
                for frame in frames:
                    writer.append_data(frame)
            os.replace(tmp_video, tmp)
        finally:
            if tmp_video.exists():
                tmp_video.unlink()
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float, atomic_path) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    duration = max(int(round(1000.0 / fps)), 10)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def resize_center_crop(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Centre-crop frames to the target aspect ratio, then resample them to ``size``.

    ``frames``: ``uint8 (T, H, W, 3)`` (or one ``(H, W, 3)`` frame); ``size``: an int (square) or
    ``(height, width)``. Downsampling uses PIL's Lanczos filter, whose support widens with the
    scale factor, so fine detail is averaged rather than aliased. Frames already at the target
    size are returned unchanged.
    """
    from PIL import Image

    single = np.asarray(frames).ndim == 3
    frames = to_rgb_uint8(np.asarray(frames)[None] if single else frames, "frames")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out_h < 1 or out_w < 1:
        raise ValueError(f"target size must be positive, got {size}")
    _, h, w, _ = frames.shape
    if (h, w) == (out_h, out_w):
        return frames[0] if single else frames
    # The largest window of the target aspect ratio that fits, centred, in whole pixels; it is cut
    # out first so that the resampling filter never reaches past it into the cropped-away border.
    scale = min(w / out_w, h / out_h)
    crop_w, crop_h = min(w, max(1, round(out_w * scale))), min(h, max(1, round(out_h * scale)))
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    out = np.empty((len(frames), out_h, out_w, 3), np.uint8)
    for i, frame in enumerate(frames):
        img = Image.fromarray(np.ascontiguousarray(frame[top:top + crop_h, left:left + crop_w]))
        out[i] = np.asarray(img.resize((out_w, out_h), resample=Image.Resampling.LANCZOS))
    return out[0] if single else out
