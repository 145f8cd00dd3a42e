"""LPIPS perceptual distance on a VGG16 feature network written in plain torch.

LPIPS compares unit-normalised VGG16 activations (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)
of two images, weighs the squared differences per channel with learned non-negative 1x1
"linear" layers and averages over space. It needs two weight files that this package never
downloads:

* **VGG16** ImageNet weights in the layout of the usual torch hub file
  ``vgg16-397923af.pth`` (keys ``features.N.weight/bias``; ``classifier.*`` keys are ignored
  because LPIPS does not use them);
* the **LPIPS linear layers** for VGG (v0.1; keys ``lin0.model.1.weight`` ..
  ``lin4.model.1.weight``), as shipped in the ``lpips`` package as ``weights/v0.1/vgg.pth``.

Both load strictly: a missing, unexpected or mis-shaped tensor is an error that names it.
:func:`find_lpips_weights` looks for the files in the usual places; the codec trainer switches
the perceptual term off with one log line when they are absent.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from diffusion_reward.errors import UserError

VGG16_FILE = "vgg16-397923af.pth"
LPIPS_LIN_FILE = "lpips_vgg.pth"  # name looked for in the torch hub cache
# channels of VGG16's conv layers; "M" is a 2x2 max-pool (torchvision's layer indices follow)
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# indices (in `features`) of the ReLUs LPIPS reads: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_TAPS = (3, 8, 15, 22, 29)
_TAP_CHANNELS = (64, 128, 256, 512, 512)
# ImageNet normalisation of [-1, 1] inputs, as LPIPS defines it
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class WeightsError(UserError, ValueError):
    """A weight file is missing, unreadable or does not fit the network; the message names it."""


class VGG16Features(nn.Module):
    """The convolutional part of VGG16 (``features.0`` .. ``features.29``), returning the LPIPS taps."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                taps.append(x)
        return taps


class _Lin(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        # (dropout, 1x1 conv) keeps the key names of the published weights: lin{i}.model.1.weight
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """``lpips(x, y) -> (B,)`` perceptual distances between float images in ``[-1, 1]``; frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = VGG16Features()
        for i, c in enumerate(_TAP_CHANNELS):
            setattr(self, f"lin{i}", _Lin(c))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)  # always frozen: no dropout, whatever the caller's mode

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.float(), y.float()
        fx = self.vgg((x - self.shift) / self.scale)
        fy = self.vgg((y - self.shift) / self.scale)
        total = 0
        for i, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            lin = getattr(self, f"lin{i}").model[1]
            total = total + lin((a - b).pow(2)).mean((2, 3))
        return total.squeeze(1)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged or pickled-object files
        raise WeightsError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    return state


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs network {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}" if missing else "",
                 f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}" if unexpected else "",
                 f"mis-shaped {shapes[:3]}" if shapes else ""]
        raise WeightsError(f"{path}: not {what} weights ({'; '.join(p for p in parts if p)})")
    module.load_state_dict(state, strict=True)


def load_lpips(vgg_path: str | os.PathLike, lin_path: str | os.PathLike) -> LPIPS:
    """An :class:`LPIPS` with VGG16 and linear-layer weights loaded strictly from the two files."""
    model = LPIPS()
    vgg_path, lin_path = Path(vgg_path), Path(lin_path)
    vgg_state = {k: v for k, v in _read_state_dict(vgg_path).items() if not k.startswith("classifier.")}
    _load_strict(model.vgg, vgg_state, vgg_path, "VGG16 (features.*)")
    lins = nn.ModuleDict({f"lin{i}": getattr(model, f"lin{i}") for i in range(len(_TAP_CHANNELS))})
    _load_strict(lins, _read_state_dict(lin_path), lin_path, "LPIPS linear-layer (lin0..lin4)")
    return model.eval()


def default_locations() -> tuple[list[Path], list[Path]]:
    """Where :func:`find_lpips_weights` looks for (VGG16, linear layers) when no path is given.

    VGG16: ``<torch hub dir>/checkpoints/vgg16-397923af.pth``. Linear layers:
    ``<torch hub dir>/checkpoints/lpips_vgg.pth``, then ``weights/v0.1/vgg.pth`` of an installed
    ``lpips`` package.
    """
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    lins = [hub / LPIPS_LIN_FILE]
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.origin:
        lins.append(Path(spec.origin).parent / "weights" / "v0.1" / "vgg.pth")
    return [hub / VGG16_FILE], lins


def find_lpips_weights(vgg: str = "", lin: str = "") -> tuple[Path | None, Path | None]:
    """Resolve the VGG16 and LPIPS weight files: the given paths, else the usual cache locations.

    An explicitly given path that does not exist is an error; a default location that holds no
    file yields ``None`` (the caller decides whether to go on without LPIPS).
    """
    found = []
    for given, candidates in zip((vgg, lin), default_locations()):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise WeightsError(f"{path}: no such weights file")
            found.append(path)
        else:
            found.append(next((c for c in candidates if c.is_file()), None))
    return found[0], found[1]
