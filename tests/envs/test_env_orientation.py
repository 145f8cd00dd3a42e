"""Frames are upright: sky above the table, and the world not mirrored.

MetaWorld's corner cameras are rolled upside down; the renderer rotates their frames 180 degrees.
The checks use MuJoCo's segmentation (which geom, if any, each pixel shows), oriented exactly like
the observation, and a pinhole projection of the gripper through the camera's pose.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from diffusion_reward.envs import make_env

SIZE = 64


@pytest.fixture(scope="module")
def env():
    env = make_env("reach-v3", image_size=SIZE, seed=0)
    yield env
    env.close()


def sky_above(seg: np.ndarray) -> bool:
    """The background (no geometry) fills the top third and is absent from the bottom third."""
    background = seg == -1
    third = seg.shape[0] // 3
    return background[:third].mean() > 0.8 and background[-third:].mean() < 0.05


def test_corner2_frame_has_the_background_on_top_and_the_raw_render_does_not(env):
    obs, _ = env.reset(seed=0)
    assert env.renderer.rotate is True  # corner2's image-up axis points at the floor
    seg = env.renderer.render_segmentation()
    assert sky_above(seg)
    assert not sky_above(seg[::-1, ::-1])  # the camera's own, unrotated frame fails
    frame = obs.transpose(1, 2, 0).astype(np.float64)
    # the observation is aligned with the segmentation: background pixels are one flat colour
    assert frame[seg == -1].std(axis=0).max() < 10
    assert frame[::-1, ::-1][seg == -1].std(axis=0).max() > 30
    assert np.array_equal(env.renderer.render_raw()[::-1, ::-1], obs.transpose(1, 2, 0))


def project(model, data, camera: str, point: np.ndarray, size: int) -> tuple[float, float]:
    """(row, column) of a world point in the camera's own (unrotated) image."""
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    x, y, z = data.cam_xmat[cam].reshape(3, 3).T @ (point - data.cam_xpos[cam])
    focal = (size / 2) / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    return size / 2 - focal * y / -z, size / 2 + focal * x / -z


def gripper_bodies(model) -> set[int]:
    """The hand body and everything attached below it."""
    gripper = {mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "hand")}
    for body in range(model.nbody):  # parents come before their children in MuJoCo's body order
        if model.body_parentid[body] in gripper:
            gripper.add(body)
    return gripper


def test_the_gripper_appears_where_the_camera_projects_it_not_mirrored(env):
    env.reset(seed=0)
    model, data = env.simulator.model, env.simulator.data
    gripper = gripper_bodies(model)

    def shows_gripper(seg: np.ndarray, row: float, col: float) -> bool:
        r, c = int(row), int(col)
        window = seg[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3].ravel()
        return any(g >= 0 and model.geom_bodyid[g] in gripper for g in window)

    mirrored_misses = 0
    for direction in (1.0, -1.0):  # move the gripper to the right, then to the left of the table
        for _ in range(15):
            env.step(np.array([direction, 0, 0, 0], np.float32))
        row, col = project(model, data, "corner2", data.body("hand").xpos, SIZE)
        seg = env.renderer.render_segmentation()
        assert shows_gripper(seg, SIZE - 1 - row, SIZE - 1 - col)  # rotated 180 degrees
        mirrored_misses += not shows_gripper(seg, SIZE - 1 - row, col)  # a vertical flip would mirror
    assert mirrored_misses >= 1


def test_corner2_near_is_corner2_moved_closer_upright_with_a_larger_gripper(env):
    near = make_env("reach-v3", image_size=SIZE, camera="corner2-near", seed=0)
    try:
        near.reset(seed=0)
        env.reset(seed=0)
        assert near.camera == "corner2-near" and near.renderer.rotate is True
        model, data = near.simulator.model, near.simulator.data
        gripper = gripper_bodies(model)

        def gripper_pixels(e) -> np.ndarray:
            seg = e.renderer.render_segmentation()
            return (seg >= 0) & np.isin(e.simulator.model.geom_bodyid[np.maximum(seg, 0)], list(gripper))

        near_mask, far_mask = gripper_pixels(near), gripper_pixels(env)
        assert near_mask.sum() > 3 * far_mask.sum() > 0
        row, col = project(model, data, "corner2", data.body("hand").xpos, SIZE)
        r, c = int(SIZE - 1 - row), int(SIZE - 1 - col)  # rotated 180 degrees, as corner2
        assert near_mask[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3].any()
        assert env.simulator.model.cam_pos[model.camera("corner2").id].tolist() == [1.3, -0.2, 1.1]
    finally:
        near.close()


def test_adroit_top_view_is_upright_with_the_forearm_entering_from_below():
    env = make_env("door", image_size=SIZE, seed=0)
    try:
        env.reset()
        assert env.renderer.rotate is False
        seg = env.renderer.render_segmentation()
        model = env.simulator.model
        forearm = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "forearm")
        rows = [r for r, c in zip(*np.nonzero(seg >= 0)) if model.geom_bodyid[seg[r, c]] == forearm]
        assert rows and np.mean(rows) > SIZE * 0.6  # the arm reaches in from the bottom edge
    finally:
        env.close()
