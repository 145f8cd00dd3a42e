"""The allocator tuning the video rewards apply on CPUs: on where glibc is, off on request."""

import os
import platform
import subprocess
import sys

import pytest

CHECK = "from diffusion_reward.utils.allocator import keep_freed_memory as k; print(k(), k())"


def _run(env_value):
    env = {**os.environ, "DIFFUSION_REWARD_MALLOC_TUNING": env_value}
    return subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_switched_off_by_the_environment_variable():
    assert _run("0") == ["False", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_applied_once_on_glibc():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run("1") == ["True", "True"]
