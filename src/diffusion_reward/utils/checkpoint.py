"""Atomic file writes, the artefact directory format (``config.json`` + ``*.safetensors``) and format versions.

Everything the project writes to disk goes through :func:`atomic_path`: the data lands in a
temporary file in the same directory and is renamed into place, so a run killed mid-write
leaves either the old file or the new one, never half of one. Weights are stored as
safetensors, metadata as JSON; nothing is pickled.

Format versions, one scheme for every file format the project writes (model artefacts, datasets,
checkpoints, benchmark records): the JSON carries an integer ``"format_version"``; a reader
accepts any version up to its own and refuses a newer one with :func:`check_format_version`'s
one-line message naming the file. Every saved model (codec, video models, reward models) is an
artefact directory whose ``config.json`` starts with :func:`artefact_header` (``kind``,
``format_version``, ``package_version``) and is read back with :func:`read_artefact_config`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from safetensors.torch import load_file, save_file

from diffusion_reward.errors import PLACE_ERRORS, UserError
from diffusion_reward.version import __version__

CONFIG_NAME = "config.json"
ARTEFACT_FORMAT_VERSION = 1  # the layout of model artefact directories: codec, video models and reward models
_UMASK = os.umask(0)
os.umask(_UMASK)
WEIGHTS_NAME = "model.safetensors"


class WriteError(UserError):
    """A file could not be written where it was asked for; the message names the path and why. Whatever was
    there before is left as it was."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    A full disk or a read-only or forbidden location raises :class:`WriteError` naming ``path``; the
    temporary file is removed and an existing ``path`` keeps its old content.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno not in PLACE_ERRORS:
            raise
        raise WriteError(f"{path}: cannot write here: {PLACE_ERRORS[exc.errno]} ({exc.strerror})") from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the temporary file of an :func:`atomic_path` write (``.<name>.<random>.tmp``): one
    that a kill left behind belongs to no result."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors as safetensors, atomically."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise ValueError(f"{path}: cannot read safetensors file ({exc})") from None


def save_artefact(directory: str | os.PathLike, config: dict[str, Any],
                  tensors: dict[str, torch.Tensor], weights_name: str = WEIGHTS_NAME) -> Path:
    """Write an artefact directory: ``config.json`` plus one safetensors file.

    The weights are written first and the config last, so a directory that has a config is
    complete. Temporary files that a save killed midway left in the directory are removed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():
        if is_temporary(stale) and stale.is_file():
            stale.unlink(missing_ok=True)
    save_tensors(directory / weights_name, tensors)
    atomic_write_json(directory / CONFIG_NAME, config)
    return directory


def load_artefact(directory: str | os.PathLike, weights_name: str = WEIGHTS_NAME,
                  device: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read an artefact directory written by :func:`save_artefact`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a model directory (expected a folder with {CONFIG_NAME})")
    config = read_json(directory / CONFIG_NAME)
    return config, load_tensors(directory / weights_name, device=device)


class ArtefactError(UserError, ValueError):
    """A model directory cannot be loaded (missing, not a model, another kind, newer format, mismatched weights)."""


def check_format_version(meta: dict[str, Any], supported: int, path: str | os.PathLike, what: str,
                         error: type[UserError] = UserError) -> None:
    """Refuse a file written in a newer format than this package reads (``what``: "dataset", "checkpoint", ...)."""
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > supported:
        raise error(f"{path}: {what} format {version} is newer than this package reads ({supported}); "
                    "upgrade diffusion-reward")


def artefact_header(kind: str) -> dict[str, Any]:
    """The first fields of every artefact's ``config.json``."""
    return {"kind": kind, "format_version": ARTEFACT_FORMAT_VERSION, "package_version": __version__}


def read_artefact_config(directory: str | os.PathLike, what: str = "model",
                         kind: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Read and check an artefact directory's ``config.json`` (not its weights).

    Raises :class:`ArtefactError` naming the path when the directory or its config is missing or
    unreadable, when it holds no ``kind`` or, with ``kind``, another kind than expected, and when
    its format is newer than this package reads. Artefacts written before the one header
    (``"model_type"`` instead of ``"kind"``) read the same.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtefactError(f"{directory}: not a {what} directory (no such folder; expected one with {CONFIG_NAME})")
    path = directory / CONFIG_NAME
    try:
        meta = read_json(path)
    except FileNotFoundError:
        raise ArtefactError(f"{directory}: not a {what} directory (no {CONFIG_NAME})") from None
    except ValueError as exc:
        raise ArtefactError(str(exc)) from None
    if not isinstance(meta, dict):
        raise ArtefactError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if "kind" not in meta and "model_type" in meta:
        meta["kind"] = meta.pop("model_type")
    found = meta.get("kind")
    if not isinstance(found, str):
        raise ArtefactError(f"{path}: has no \"kind\" naming the model")
    expected = [kind] if isinstance(kind, str) else list(kind or [])
    if expected and found not in expected:
        wanted = " or ".join(repr(k) for k in expected)
        raise ArtefactError(f"{directory}: holds a {found!r} {what}, expected {wanted}")
    check_format_version(meta, ARTEFACT_FORMAT_VERSION, path, what, ArtefactError)
    return meta
