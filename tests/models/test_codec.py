"""The VQ-GAN codec: shapes, the token round trip, gradients, codebook health, save/load."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffusion_reward.models import ArtefactError
from diffusion_reward.models.codec import (PRESETS, VQGAN, CodecConfig, VectorQuantizer, frames_to_tensor, psnr,
                                           tensor_to_frames)
from diffusion_reward.models.codec.discriminator import PatchDiscriminator
from diffusion_reward.models.codec.losses import adaptive_gan_weight, hinge_discriminator_loss

TINY = PRESETS["tiny"]


def _frames(n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 64, 64, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def tiny() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(TINY).eval()


def test_shapes_and_token_grid(tiny: VQGAN) -> None:
    x = _frames()
    idx = tiny.encode_to_indices(x)
    assert idx.shape == (4, 8, 8) and idx.dtype == torch.int64
    assert 0 <= int(idx.min()) and int(idx.max()) < TINY.codebook_size
    assert tiny.decode_indices(idx).shape == (4, 3, 64, 64)
    rec, q = tiny(x)
    assert rec.shape == x.shape and q.z_q.shape == (4, TINY.codebook_dim, 8, 8)
    assert TINY.token_grid == 8 and PRESETS["paper"].token_grid == 8 and PRESETS["small"].token_grid == 8


def test_paper_preset_matches_the_reference_size() -> None:
    cfg = PRESETS["paper"]
    assert (cfg.codebook_size, cfg.codebook_dim, cfg.channels, cfg.num_res_blocks) == (1024, 64, (128, 128, 256, 256), 2)
    assert cfg.norm_groups == 32
    n = VQGAN(cfg).num_parameters()
    assert abs(n - 20.5e6) / 20.5e6 < 0.05, n
    # PatchGAN with 3 layers and 64 base filters
    assert abs(sum(p.numel() for p in PatchDiscriminator(3, 64).parameters()) - 2.77e6) < 0.02e6


def test_indices_round_trip_equals_the_quantized_path(tiny: VQGAN) -> None:
    x = _frames(6, seed=1)
    with torch.no_grad():
        rec, q = tiny(x)
        idx = tiny.encode_to_indices(x)
        assert torch.equal(idx, q.indices)
        assert torch.equal(tiny.indices_to_latents(idx), q.z_q)
        assert torch.equal(tiny.decode_indices(idx), rec)


def test_encode_frames_matches_encode_to_indices(tiny: VQGAN) -> None:
    frames = (np.random.default_rng(0).random((5, 64, 64, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        direct = tiny.encode_to_indices(frames_to_tensor(frames))
    assert torch.equal(tiny.encode_frames(frames, batch_size=2), direct)
    out = tiny.decode_to_frames(direct, batch_size=3)
    assert out.shape == (5, 64, 64, 3) and out.dtype == np.uint8


def test_straight_through_gradients_reach_the_encoder() -> None:
    torch.manual_seed(0)
    model = VQGAN(TINY).train()
    x = _frames(2)
    rec, _ = model(x)
    (rec - x).abs().mean().backward()  # reconstruction only: the path to the encoder crosses the quantizer
    for p in (model.encoder.conv_in.weight, model.quant_conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_quantizer_picks_the_nearest_code_and_its_losses() -> None:
    torch.manual_seed(0)
    for l2 in (True, False):
        q = VectorQuantizer(32, 8, l2_normalize=l2, beta=0.25).eval()
        z = torch.randn(2, 8, 3, 3)
        out = q(z)
        flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
        if l2:
            flat = F.normalize(flat, dim=-1)
        brute = torch.cdist(flat, q.codes()).argmin(-1).reshape(2, 3, 3)
        assert torch.equal(out.indices, brute)
        picked = q.codes()[out.indices.flatten()]
        expected = 1.25 * F.mse_loss(picked, flat)
        assert torch.allclose(out.loss, expected, atol=1e-6)
        assert torch.equal(out.z_q.permute(0, 2, 3, 1).reshape(-1, 8), q.embed(out.indices).reshape(-1, 8))


def test_low_dim_lookup_projects_back_to_the_code_size() -> None:
    q = VectorQuantizer(64, 16, lookup_dim=4)
    out = q(torch.randn(3, 16, 2, 2))
    assert out.z_q.shape == (3, 16, 2, 2) and q.codebook.shape == (64, 4)
    with pytest.raises(ValueError, match="lookup_dim"):
        VectorQuantizer(64, 4, lookup_dim=16)


def test_codes_start_from_data_and_dead_codes_are_revived() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(16, 4, l2_normalize=True, revive_after=2).train()

    def cluster(direction: torch.Tensor) -> torch.Tensor:
        return direction[None, :, None, None] + 0.05 * torch.randn(8, 4, 2, 2)

    a, b = F.normalize(torch.randn(4), dim=0), F.normalize(torch.randn(4), dim=0)
    first = q(cluster(a))
    assert first.revived == 16  # the first training batch initialises every code from encoder outputs
    assert bool(((F.normalize(q.codebook, dim=-1) @ a) > 0.9).all())
    # the data moves elsewhere: codes nobody picks for 2 steps are reset to the new encoder outputs
    usage = [float(q(cluster(b)).usage) for _ in range(4)]
    assert usage[-1] > usage[0]
    assert int(((F.normalize(q.codebook, dim=-1) @ b) > 0.9).sum()) >= 8
    q.eval()
    before = q.codebook.detach().clone()
    q(cluster(a))
    assert torch.equal(before, q.codebook)  # nothing changes outside training
    off = VectorQuantizer(16, 4, revive_after=0).train()
    assert off(cluster(a)).revived == 0


def test_usage_and_perplexity_of_a_batch() -> None:
    q = VectorQuantizer(4, 2, l2_normalize=False).eval()
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]]))
    z = torch.tensor([[1.0, 0], [0, 1], [1, 0.1], [0.1, 1]]).t().reshape(1, 2, 2, 2)
    out = q(z)
    assert float(out.usage) == 0.5 and abs(float(out.perplexity) - 2.0) < 1e-5


def test_save_load_round_trip_gives_identical_outputs(tmp_path, tiny: VQGAN) -> None:
    tiny.save_pretrained(tmp_path / "codec")
    meta = json.loads((tmp_path / "codec" / "config.json").read_text())
    assert meta["kind"] == "vqgan" and meta["format_version"] == 1 and "package_version" in meta
    loaded = VQGAN.from_pretrained(tmp_path / "codec", device="cpu")
    assert loaded.config == tiny.config and not loaded.training
    x = _frames(3, seed=2)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], tiny(x)[0])
        assert torch.equal(loaded.encode_to_indices(x), tiny.encode_to_indices(x))


def test_loading_a_wrong_or_damaged_directory_is_a_clear_error(tmp_path, tiny: VQGAN) -> None:
    with pytest.raises(ArtefactError, match="not a codec directory"):
        VQGAN.from_pretrained(tmp_path / "nothing")
    tiny.save_pretrained(tmp_path / "codec")
    meta = json.loads((tmp_path / "codec" / "config.json").read_text())
    legacy = {"model_type": "vqgan", "format_version": 1, "config": meta["config"], "extra": {}}  # before one header
    (tmp_path / "codec" / "config.json").write_text(json.dumps(legacy))
    assert VQGAN.from_pretrained(tmp_path / "codec").config == tiny.config
    (tmp_path / "codec" / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ArtefactError, match=r"codec format 99 is newer than this package reads \(1\)"):
        VQGAN.from_pretrained(tmp_path / "codec")
    meta["config"]["codebook_size"] = 256
    (tmp_path / "codec" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ArtefactError, match="do not match"):
        VQGAN.from_pretrained(tmp_path / "codec")
    meta["kind"] = "vqdiffusion"
    (tmp_path / "codec" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ArtefactError, match="expected 'vqgan'"):
        VQGAN.from_pretrained(tmp_path / "codec")


def test_frame_conversion_round_trip() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    x = frames_to_tensor(frames)
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(tensor_to_frames(x), frames)
    with pytest.raises(ValueError, match="uint8"):
        frames_to_tensor(frames.astype(np.float32))


def test_psnr_in_decibels() -> None:
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[1] += 2 * 10 / 255  # 10 grey levels off everywhere
    p = psnr(x, y)
    assert p[0] > 90 and abs(float(p[1]) - 20 * np.log10(255 / 10)) < 0.01


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="norm_groups"):
        CodecConfig(channels=(24, 32), norm_groups=16)
    with pytest.raises(ValueError, match="divisible"):
        CodecConfig(image_size=60, channels=(16, 16, 16, 16), norm_groups=8)
    for bad in ((1, 3, 36, 36), (1, 3, 128, 128), (1, 64, 64, 3)):
        with pytest.raises(ValueError, match="expected frames"):
            VQGAN(TINY).encode_to_indices(torch.zeros(bad))
    assert VQGAN(TINY).encode_to_indices(torch.zeros(1, 3, 32, 48)).shape == (1, 4, 6)  # a training crop
    cfg = dataclasses.replace(TINY, image_size=32, channels=(16, 16, 16))
    assert VQGAN(cfg).encode_to_indices(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 8)


def test_adaptive_gan_weight_is_the_gradient_norm_ratio() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    rec = (3 * w).sum()          # gradient (3, 3): norm 3*sqrt(2)
    gan = (w ** 2).sum()         # gradient (2, 4): norm sqrt(20)
    lam = adaptive_gan_weight(rec, gan, w)
    assert abs(float(lam) - 3 * 2 ** 0.5 / (20 ** 0.5 + 1e-4)) < 1e-5 and not lam.requires_grad
    assert float(hinge_discriminator_loss(torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5]))) == pytest.approx(
        0.5 * (0.5 + 0.75))
