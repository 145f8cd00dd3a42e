"""``diffusion-reward doctor`` through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from diffusion_reward.cli import main
from diffusion_reward.commands.doctor import README_FP32_GFLOPS, _print_table


def test_doctor_help():
    result = subprocess.run([sys.executable, "-m", "diffusion_reward.cli", "doctor", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--json" in result.stdout and "--seconds" in result.stdout


def test_doctor_json_reports_versions_rendering_and_compute(capsys):
    from diffusion_reward.envs import BACKEND

    assert main(["doctor", "--json", "--seconds", "0.05"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["software"]["mujoco"] and report["software"]["metaworld"] != "not installed"
    render = report["rendering"]
    assert render["ok"] and render["backend"] == BACKEND.name and render["image_size"] == 64
    assert render["fast_fps"] > 0 and render["default_fps"] > 0
    assert render["fast_over_default"] == pytest.approx(render["fast_fps"] / render["default_fps"], rel=0.05)
    compute = report["compute"]
    assert compute["device"] in ("cpu", "cuda") and compute["torch_threads"] >= 1
    assert compute["fp32_gflops"] > 0 and compute["bf16_gflops"] > 0 and isinstance(compute["bf16_faster"], bool)
    assert compute["fp32_over_readme_machine"] == pytest.approx(compute["fp32_gflops"] / README_FP32_GFLOPS, abs=0.01)

    _print_table(report)  # the same report as the default table
    table = capsys.readouterr().out
    assert f"{render['fast_fps']} frames/s" in table and "fast / default" in table and "bf16" in table
    if compute["device"] == "cpu":
        assert "vs README machine" in table


def test_doctor_fails_with_one_line_and_the_fix_when_rendering_cannot_work():
    env = dict(os.environ, MUJOCO_GL="bogus")
    command = [sys.executable, "-m", "diffusion_reward.cli", "doctor", "--seconds", "0.05"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "MUJOCO_GL='bogus'" in lines[0] and "apt-get install" in lines[0] and "export MUJOCO_GL=egl" in lines[0]
    assert "unavailable" in result.stdout  # the rest of the report is still printed


def test_doctor_json_records_the_rendering_failure(monkeypatch, capsys):
    import diffusion_reward.envs as envs
    from diffusion_reward.envs import rendering

    broken = rendering.RenderBackend("disable", "auto: no headless OpenGL found", auto=True,
                                     problem="EGL unusable (libEGL.so.1 not found) and OSMesa unusable")
    monkeypatch.setattr(rendering, "BACKEND", broken)
    monkeypatch.setattr(envs, "BACKEND", broken)
    assert main(["doctor", "--json", "--seconds", "0.05"]) == 2
    captured = capsys.readouterr()
    render = json.loads(captured.out)["rendering"]
    assert render["ok"] is False and render["backend"] == "disable" and "libEGL.so.1 not found" in render["error"]
    assert captured.err.count("\n") == 1 and "export MUJOCO_GL=osmesa" in captured.err
