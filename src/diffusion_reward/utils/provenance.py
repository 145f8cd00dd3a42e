"""Where a result came from: the code version, the machine, and fingerprints of the files it read.

Result records (``benchmarks/results/``) carry these so that a number can be traced to the
commit, the machine and the exact model weights that produced it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def code_version() -> dict[str, Any]:
    """The package version and, in a git checkout, the commit and whether the work tree had changes."""
    from diffusion_reward.version import __version__

    info: dict[str, Any] = {"package": __version__}
    try:
        run = dict(cwd=_PACKAGE_DIR, capture_output=True, text=True, timeout=10, check=True)
        info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], **run).stdout
        info["dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout (an installed package): the version is all there is
    return info


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine a result was measured on: CPU, cores this process may use, Python, PyTorch, CUDA."""
    import torch

    from diffusion_reward.utils.device import available_cpus

    info = {"cpu": cpu_model(), "cores": available_cpus(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_tag() -> str:
    """A short name for this machine in result file names (``benchmarks/results/<bench>_<tag>.jsonl``):
    the CPU family, its widest matrix instructions and the cores this process may use, e.g.
    ``epyc-avx2-2cores`` or ``xeon-amx-16cores``, then the GPU's name when there is one."""
    import re

    import torch

    from diffusion_reward.utils.device import available_cpus

    cpu = cpu_model().lower()
    family = next((name for name in ("epyc", "xeon", "ryzen", "core", "apple", "graviton") if name in cpu),
                  platform.machine().lower() or "cpu")
    try:
        flags = next((set(line.split(":", 1)[1].split()) for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), set())
    except OSError:
        flags = set()
    isa = next((tag for flag, tag in (("amx_bf16", "amx"), ("avx512_bf16", "avx512bf16"), ("avx512f", "avx512"),
                                      ("avx2", "avx2")) if flag in flags), platform.machine().lower() or "cpu")
    tag = f"{family}-{isa}-{available_cpus()}cores"
    if torch.cuda.is_available():
        tag += "-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    return tag


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of one file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_fingerprint(directory: str | os.PathLike) -> str:
    """SHA-256 (hex) over every file of ``directory`` (relative path and content digest, in sorted order):
    two directories share a fingerprint exactly when they hold the same files with the same bytes. The
    temporary file of a write that a kill interrupted is no part of it."""
    from diffusion_reward.utils.checkpoint import is_temporary

    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not is_temporary(p)):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()
