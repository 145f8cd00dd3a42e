"""Rendering backend choice, render settings, renderer lifetime, and clean interpreter exit."""

from __future__ import annotations

import ctypes.util
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from diffusion_reward.envs import BACKEND, RenderSettings, make_env


def run_python(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


FRAME_HASH = """
import hashlib
{first}
from diffusion_reward.envs import BACKEND, make_env
env = make_env("reach-v3", seed=0)
obs, _ = env.reset()
print(BACKEND.name, hashlib.sha256(obs.tobytes()).hexdigest())
"""  # the env is deliberately not closed: exit must still be clean


def test_backend_is_usable_and_exported():
    assert BACKEND.usable, BACKEND
    assert os.environ["MUJOCO_GL"] == BACKEND.name


def test_import_order_and_exit_are_clean():
    """mujoco imported first (no MUJOCO_GL, no display) still renders, and exit prints nothing."""
    env = make_env("reach-v3", seed=0)
    try:
        expected = hashlib.sha256(env.reset()[0].tobytes()).hexdigest()
    finally:
        env.close()
    result = run_python(FRAME_HASH.format(first="import mujoco"), MUJOCO_GL=None, DISPLAY=None)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no EGLError tracebacks from contexts destroyed after the display
    name, digest = result.stdout.split()
    assert name in ("egl", "osmesa") and digest == expected


def test_a_bad_backend_keeps_state_envs_working_and_explains_pixels():
    code = """
from diffusion_reward.envs import RenderingUnavailable, make_env
env = make_env("reach-v3", pixels=False)
print(env.reset(seed=0)[0].shape)
try:
    make_env("reach-v3")
except RenderingUnavailable as exc:
    print(exc)
"""
    result = run_python(code, MUJOCO_GL="bogus")
    assert result.returncode == 0, result.stderr
    shape, message = result.stdout.strip().splitlines()
    assert shape == "(39,)"
    assert "MUJOCO_GL='bogus'" in message and "export MUJOCO_GL=egl" in message and "apt-get install" in message


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None, reason="libOSMesa is not installed")
def test_osmesa_backend_renders():
    result = run_python(FRAME_HASH.format(first=""), MUJOCO_GL="osmesa")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.split()[0] == "osmesa"


def test_settings_change_the_pixels_and_keep_the_models_own_values_for_default():
    frames = {}
    for name, settings in (("fast", RenderSettings.fast()), ("default", RenderSettings.default())):
        env = make_env("reach-v3", seed=0, render=settings)
        try:
            frames[name] = env.reset()[0]
            quality = env.simulator.model.vis.quality
            assert env.render_settings == settings
            if name == "default":
                assert (quality.shadowsize, quality.offsamples) == (4096, 4)  # MetaWorld's own
            else:
                assert (quality.shadowsize, quality.offsamples) == (0, 0)
        finally:
            env.close()
    assert frames["fast"].shape == frames["default"].shape
    assert np.abs(frames["fast"].astype(int) - frames["default"].astype(int)).mean() > 1.0  # shadows etc.


def test_renderer_closes_once_and_refuses_to_render_after():
    env = make_env("reach-v3", seed=0)
    env.reset()
    renderer = env.renderer
    env.close()
    env.close()
    renderer.close()
    with pytest.raises(RuntimeError, match="closed"):
        renderer.render()


def test_state_env_renders_on_demand():
    env = make_env("reach-v3", pixels=False, seed=0, image_size=48)
    try:
        env.reset()
        frame = env.render_frame()
        assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8 and frame.std() > 10
    finally:
        env.close()
