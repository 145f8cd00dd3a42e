"""LPIPS: strict loading of VGG16 + linear-layer weights, and one clear line when they are absent."""

from __future__ import annotations

import logging

import pytest
import torch

from diffusion_reward.models.codec.lpips import (LPIPS, VGG16Features, WeightsError, find_lpips_weights,
                                                 load_lpips)
from diffusion_reward.train.codec import CodecTrainConfig, build_lpips


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """Randomly initialised weights saved in the published layouts (torchvision VGG16, LPIPS v0.1)."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    reference = LPIPS()
    vgg = {f"features.{k.split('features.')[1]}": v for k, v in reference.vgg.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # the hub file's classifier is ignored by design
    lins = {f"lin{i}.model.1.weight": torch.rand_like(getattr(reference, f"lin{i}").model[1].weight)
            for i in range(5)}
    torch.save(vgg, root / "vgg16-397923af.pth")
    torch.save(lins, root / "lpips_vgg.pth")
    return root, vgg, lins


def test_vgg16_has_the_reference_layout() -> None:
    net = VGG16Features()
    assert sum(p.numel() for p in net.parameters()) == 14_714_688  # VGG16's convolutional part
    keys = [k for k in net.state_dict() if k.endswith(".weight")]
    assert keys[0] == "features.0.weight" and keys[-1] == "features.28.weight" and len(keys) == 13


def test_strict_loading_round_trip(weight_files) -> None:
    root, vgg, lins = weight_files
    model = load_lpips(root / "vgg16-397923af.pth", root / "lpips_vgg.pth")
    assert torch.equal(model.vgg.features[28].weight, vgg["features.28.weight"])
    assert torch.equal(model.lin4.model[1].weight, lins["lin4.model.1.weight"])
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = x.clone().requires_grad_(True)
    d = model(x, y)
    assert d.shape == (2,) and torch.allclose(d, torch.zeros(2), atol=1e-6)
    z = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    model(x, z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.parameters())


def test_a_partial_or_mismatched_file_is_rejected(weight_files, tmp_path) -> None:
    root, vgg, lins = weight_files
    partial = {k: v for k, v in vgg.items() if k != "features.28.bias"}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match=r"missing \['features.28.bias'\]"):
        load_lpips(tmp_path / "partial.pth", root / "lpips_vgg.pth")
    extra = dict(lins, **{"lin5.model.1.weight": torch.zeros(1, 8, 1, 1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(WeightsError, match="unexpected"):
        load_lpips(root / "vgg16-397923af.pth", tmp_path / "extra.pth")
    shaped = dict(lins, **{"lin0.model.1.weight": torch.zeros(1, 32, 1, 1)})
    torch.save(shaped, tmp_path / "shaped.pth")
    with pytest.raises(WeightsError, match="mis-shaped"):
        load_lpips(root / "vgg16-397923af.pth", tmp_path / "shaped.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_lpips(tmp_path / "junk.pth", root / "lpips_vgg.pth")


def test_weights_are_found_in_the_torch_hub_cache(weight_files, tmp_path, monkeypatch) -> None:
    root, _, _ = weight_files
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert find_lpips_weights() == (None, None)
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "checkpoints").symlink_to(root)
    hub = tmp_path / "hub" / "checkpoints"
    assert find_lpips_weights() == (hub / "vgg16-397923af.pth", hub / "lpips_vgg.pth")
    with pytest.raises(WeightsError, match="no such weights file"):
        find_lpips_weights(vgg=str(tmp_path / "nope.pth"))


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_without_weights_the_term_is_switched_off_with_one_line(tmp_path, monkeypatch, weight_files) -> None:
    from diffusion_reward.utils.logging import get_logger

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    handler = _Lines()
    get_logger().addHandler(handler)
    try:
        assert build_lpips(CodecTrainConfig()) is None
        assert len(handler.lines) == 1 and "LPIPS perceptual loss OFF" in handler.lines[0]
        assert build_lpips(CodecTrainConfig(lpips_weight=0.0)) is None and len(handler.lines) == 1
        root, _, _ = weight_files
        on = build_lpips(CodecTrainConfig(lpips_vgg=str(root / "vgg16-397923af.pth"),
                                          lpips_lin=str(root / "lpips_vgg.pth")))
        assert isinstance(on, LPIPS) and "LPIPS perceptual loss on" in handler.lines[-1]
    finally:
        get_logger().removeHandler(handler)


def test_codec_training_uses_lpips_when_given(weight_files, tmp_path) -> None:
    import dataclasses
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from test_codec_training import make_squares

    from diffusion_reward.train.codec import TRAIN_PRESETS, train_codec

    root, _, _ = weight_files
    data = make_squares(tmp_path / "data", train=1, test=1, length=4)
    loop = dataclasses.replace(TRAIN_PRESETS["tiny"][1], run_dir=str(tmp_path / "run"), steps=2, batch_size=2,
                               log_every=1, tensorboard=False, progress=False, threads=1)
    train = CodecTrainConfig(lpips_vgg=str(root / "vgg16-397923af.pth"), lpips_lin=str(root / "lpips_vgg.pth"))
    train_codec(data, tmp_path / "codec", "tiny", train_config=train, trainer_config=loop)
    assert "lpips" in (tmp_path / "run" / "train.csv").read_text().splitlines()[0].split(",")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task"]["lpips"] is True
