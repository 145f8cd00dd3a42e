"""Seeding and capturing/restoring every random generator a run uses."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and PyTorch's generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, torch.Tensor]:
    """The state of every global generator, as tensors (storable in safetensors)."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    state = {
        "torch_cpu": torch.get_rng_state(),
        "python": torch.tensor(list(py_state[1]) + [py_state[2] if py_state[2] is not None else -1],
                               dtype=torch.int64),
        "python_version": torch.tensor([py_state[0]], dtype=torch.int64),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"torch_cuda_{i}"] = s
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore generators captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch_cpu"].to(torch.uint8))
    values = state["python"].tolist()
    gauss = None if values[-1] == -1 else values[-1]
    random.setstate((int(state["python_version"][0]), tuple(int(v) for v in values[:-1]), gauss))
    pos, has_gauss = state["numpy_pos"].tolist()
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(pos), int(has_gauss),
                         float(state["numpy_gauss"][0])))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            key = f"torch_cuda_{i}"
            if key in state:
                torch.cuda.set_rng_state(state[key].to(torch.uint8), i)
