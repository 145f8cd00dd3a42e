import os

import pytest
import torch

from diffusion_reward.utils.checkpoint import (atomic_path, atomic_write_json, load_artefact, read_json,
                                                save_artefact)
from diffusion_reward.utils.seeding import rng_state, seed_everything, set_rng_state


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("killed")
    assert read_json(target) == {"step": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_artefact_round_trip(tmp_path):
    tensors = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    save_artefact(tmp_path / "model", {"kind": "toy"}, tensors)
    config, loaded = load_artefact(tmp_path / "model")
    assert config == {"kind": "toy"}
    assert torch.equal(loaded["w"], tensors["w"]) and torch.equal(loaded["b"], tensors["b"])


def test_saving_an_artefact_clears_what_a_killed_save_left(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / ".model.safetensors.x1y2.tmp").write_bytes(b"half of the weights")  # the kill's leftover
    save_artefact(directory, {"kind": "toy"}, {"w": torch.zeros(2)})
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"]


def test_missing_artefact_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_artefact(tmp_path / "nope")


def test_rng_state_restores_every_generator():
    import random

    import numpy as np

    seed_everything(3)
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_written_files_get_ordinary_permissions(tmp_path):
    atomic_write_json(tmp_path / "a.json", {})
    mode = (tmp_path / "a.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m
