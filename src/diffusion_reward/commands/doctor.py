"""``diffusion-reward doctor``: what this machine runs, how it renders and how fast, in ~10 seconds.

Reports the versions that matter, the MuJoCo rendering backend and why it was chosen, step+render
frames per second at 64x64 with the fast and the simulator's default visuals, the torch device
and thread counts, and whether bf16 matrix products beat fp32 here (the ``--bf16`` switches of the
trainers pay off only when they do). When rendering cannot work it still prints what it found,
then fails with one line that says how to fix it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check this machine: library versions, the MuJoCo rendering backend and its step+render\n"
        "speed (fast vs default visuals), the torch device and threads, and whether bf16 matmuls\n"
        "beat fp32. Exits with status 2 and a one-line fix when rendering cannot work.")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object instead of a table")
    parser.add_argument("--task", default="door-open-v3",
                        help="task whose step+render speed is measured (default: door-open-v3)")
    parser.add_argument("--seconds", type=float, default=1.0, metavar="S",
                        help="time spent measuring each render setting and each matmul dtype (default: 1.0)")
    parser.add_argument("--device", default="auto",
                        help="torch device to check: auto, cpu, cuda, cuda:N (default: auto)")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def software_versions() -> dict[str, str]:
    """Versions of Python and of the libraries whose behaviour the results depend on."""
    names = {"diffusion-reward": "diffusion-reward", "torch": "torch", "mujoco": "mujoco",
             "metaworld": "metaworld", "gymnasium": "gymnasium", "gymnasium-robotics": "gymnasium-robotics",
             "numpy": "numpy"}
    versions = {"python": f"{platform.python_version()} ({sys.executable})"}
    versions.update({label: _version(dist) for label, dist in names.items()})
    return versions


def rendering_report(task: str, seconds: float) -> dict[str, Any]:
    """Backend, reason, and step+render frames/s at 64x64 for the fast and default settings."""
    from diffusion_reward.envs import BACKEND, RenderingUnavailable, RenderSettings
    from diffusion_reward.envs.throughput import step_render_fps

    report: dict[str, Any] = {"backend": BACKEND.name, "reason": BACKEND.reason,
                              "lp_num_threads": os.environ.get("LP_NUM_THREADS"), "task": task, "image_size": 64}
    try:
        fast = step_render_fps(task, RenderSettings.fast(), seconds=seconds)
        default = step_render_fps(task, RenderSettings.default(), seconds=seconds, min_frames=3)
    except RenderingUnavailable as exc:
        report.update(ok=False, error=str(exc))
        return report
    report.update(ok=True, error=None, fast_fps=round(fast.fps, 1), default_fps=round(default.fps, 1),
                  fast_over_default=round(fast.fps / default.fps, 2))
    return report


def _matmul_gflops(device: Any, dtype: Any, size: int, seconds: float) -> float:
    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if device.type == "cuda" and count % 8:
            continue
        sync()
    sync()
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# float32 matmul rate of the machine on which the pipeline's CPU times (docs/experiments/pipeline-timings.md) were measured (2 cores of an
# AMD EPYC with AVX2: 119-122 GFLOP/s on 2048 x 2048 products, 2 threads). Another machine of 2
# cores at 50 GFLOP/s took 2.4x as long for the small codec (13 min 40 s against 5 min 30 s).
README_FP32_GFLOPS = 120.0


def compute_report(device_name: str, seconds: float, size: int = 1024) -> dict[str, Any]:
    """Torch device, thread counts, fp32 vs bf16 matmul throughput on that device, and the fp32 rate
    relative to the machine the README's CPU times come from."""
    import torch

    from diffusion_reward.utils.device import available_cpus, resolve_device

    device = resolve_device(device_name)
    fp32 = _matmul_gflops(device, torch.float32, size, seconds / 2)
    bf16 = _matmul_gflops(device, torch.bfloat16, size, seconds / 2)
    cores = available_cpus()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"device": str(device), "device_name": name, "torch_threads": torch.get_num_threads(),
            "cpu_cores": cores, "matmul_size": size, "fp32_gflops": round(fp32, 1), "bf16_gflops": round(bf16, 1),
            "bf16_over_fp32": round(bf16 / fp32, 2), "bf16_faster": bf16 > 1.1 * fp32,
            "fp32_over_readme_machine": round(fp32 / README_FP32_GFLOPS, 2)}


def _print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="diffusion-reward doctor", show_header=False, title_justify="left")
    table.add_column("check", style="bold")
    table.add_column("result")
    for name, version in report["software"].items():
        table.add_row(name, version)
    table.add_section()
    render = report["rendering"]
    table.add_row("rendering backend", f"{render['backend']} ({render['reason']})")
    if render["ok"]:
        where = f"{render['task']}, {render['image_size']}x{render['image_size']}"
        table.add_row("step+render, fast", f"{render['fast_fps']} frames/s ({where})")
        table.add_row("step+render, default", f"{render['default_fps']} frames/s (shadows, multisampling)")
        table.add_row("fast / default", f"{render['fast_over_default']}x")
    else:
        table.add_row("rendering", f"[red]unavailable[/red]: {render['error']}")
    if render["lp_num_threads"]:
        table.add_row("LP_NUM_THREADS", render["lp_num_threads"])
    table.add_section()
    comp = report["compute"]
    table.add_row("torch device", f"{comp['device']} ({comp['device_name']})")
    table.add_row("threads", f"{comp['torch_threads']} torch threads, {comp['cpu_cores']} cores available")
    verdict = "faster" if comp["bf16_faster"] else "not faster"
    table.add_row(f"matmul {comp['matmul_size']}x{comp['matmul_size']}",
                  f"fp32 {comp['fp32_gflops']} GFLOP/s, bf16 {comp['bf16_gflops']} GFLOP/s: "
                  f"bf16 is {verdict} ({comp['bf16_over_fp32']}x)")
    if comp["device"] == "cpu":
        ratio = comp["fp32_over_readme_machine"]
        table.add_row("vs README machine",
                      f"{ratio}x its fp32 rate ({README_FP32_GFLOPS:g} GFLOP/s): expect the README's CPU "
                      f"times x{1 / max(ratio, 1e-3):.1f}")
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    from diffusion_reward.envs import RenderingUnavailable

    report = {"software": software_versions(), "rendering": rendering_report(args.task, args.seconds),
              "compute": compute_report(args.device, args.seconds)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    if not report["rendering"]["ok"]:
        raise RenderingUnavailable(report["rendering"]["error"])
    return 0
