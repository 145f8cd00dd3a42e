"""The conditional VQ-Diffusion network: shapes, exact condition cache, sampling, bounds, save/load, learning."""

import dataclasses
import json
import math

import pytest
import torch

from diffusion_reward.errors import UserError
from diffusion_reward.models.video import CodecMismatchError, codec_reference, load_video_model
from diffusion_reward.models.video.vqdiffusion import PRESETS, VQDiffusion, build
from diffusion_reward.utils.checkpoint import save_tensors

K = 32


def tiny(**overrides):
    torch.manual_seed(0)
    return build("tiny", codebook_size=K, **overrides)


def window(batch, seed=0, k=2):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, K, (batch, k, 8, 8), generator=gen),
            torch.randint(0, K, (batch, 8, 8), generator=gen))


def test_paper_preset_has_about_18m_parameters():
    model = VQDiffusion(PRESETS["paper"])
    assert abs(model.num_parameters() - 18e6) < 0.1 * 18e6
    cfg = model.config
    assert (cfg.depth, cfg.width, cfg.heads, cfg.codebook_size, cfg.num_steps) == (16, 128, 16, 1024, 100)
    sizes = [VQDiffusion(PRESETS[name]).num_parameters() for name in ("tiny", "small", "paper")]
    assert sizes == sorted(sizes) and PRESETS["small"].depth <= PRESETS["paper"].depth


def test_forward_shapes_and_condition_embeddings_are_trained():
    model = tiny()
    cond, target = window(3)
    logits = model(target.flatten(1), torch.tensor([0, 50, 99]), cond)
    assert logits.shape == (3, 64, K)
    logits.logsumexp(-1).sum().backward()
    for p in (model.condition.code.weight, model.condition.position.weight, model.condition.frame.weight):
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0


def test_condition_position_and_frame_order_matter():
    model = tiny()
    cond, target = window(2)
    x_t = torch.full((2, 64), K)
    t = torch.tensor([10, 10])
    base = model(x_t, t, cond)
    swapped_frames = model(x_t, t, cond.flip(1))
    shuffled = model(x_t, t, cond.flatten(2)[:, :, torch.randperm(64)].view_as(cond))
    assert not torch.allclose(base, swapped_frames) and not torch.allclose(base, shuffled)


def test_relative_bias_indexes_offsets_between_content_and_condition_positions():
    from diffusion_reward.models.video.vqdiffusion import RelativeBias

    rb = RelativeBias(heads=2, frames=2, grid=8)
    with torch.no_grad():
        rb.table.copy_(torch.arange(rb.table.numel(), dtype=torch.float32).view_as(rb.table))
    bias = rb()
    assert bias.shape == (1, 2, 64, 128)
    span = 15
    for head, frame, (r1, c1), (r2, c2) in [(0, 0, (0, 0), (0, 0)), (1, 1, (3, 4), (5, 1)), (0, 1, (7, 7), (0, 0))]:
        want = rb.table[head, frame, (r1 - r2 + 7) * span + (c1 - c2 + 7)]
        assert bias[0, head, r1 * 8 + c1, frame * 64 + r2 * 8 + c2] == want
    # the same offset gets the same bias everywhere: translation invariance
    assert bias[0, 0, 9, 9] == bias[0, 0, 45, 45] and bias[0, 0, 9, 64 + 10] == bias[0, 0, 30, 64 + 31]


def test_condition_cache_is_exact():
    model = tiny().eval()
    cond, target = window(4)
    cache = model.encode_condition(cond)
    t = torch.tensor([99, 40, 3, 0])
    assert torch.equal(model(target.flatten(1), t, cond), model(target.flatten(1), t, cache))
    a = model.sample(cond, generator=torch.Generator().manual_seed(3), use_cache=True)
    b = model.sample(cond, generator=torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    rep = cache.repeat_interleave(3)
    direct = model.encode_condition(cond.repeat_interleave(3, 0))
    for (k1, v1), (k2, v2) in zip(rep.kv, direct.kv):
        torch.testing.assert_close(k1, k2)
        torch.testing.assert_close(v1, v2)


def test_separable_conv_mlp_mixes_neighbours_at_a_fraction_of_the_cost():
    full, separable = tiny(), tiny(mlp_conv="separable")
    mlp_full, mlp_sep = full.blocks[0].mlp, separable.blocks[0].mlp
    n_full = sum(p.numel() for p in mlp_full.parameters())
    n_sep = sum(p.numel() for p in mlp_sep.parameters())
    assert n_sep < n_full / 4
    # a change at one token reaches its 3x3 neighbourhood and nothing beyond
    x = torch.zeros(1, 64, separable.config.width)
    y = torch.zeros_like(x)
    y[0, 27] = 1.0  # row 3, column 3 of the 8x8 grid
    changed = (mlp_sep(y) - mlp_sep(x)).abs().sum(-1)[0].view(8, 8) > 1e-7
    assert changed[2:5, 2:5].all() and changed.sum() == 9
    # the condition cache stays exact with it
    cond, target = window(2)
    model = separable.eval()
    a = model.sample(cond, generator=torch.Generator().manual_seed(1), use_cache=True)
    b = model.sample(cond, generator=torch.Generator().manual_seed(1), use_cache=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    bound = model.log_likelihood_bound(cond, target, generator=torch.Generator().manual_seed(2))
    assert torch.equal(bound, model.log_likelihood_bound(cond, target, generator=torch.Generator().manual_seed(2),
                                                         use_cache=False))
    with pytest.raises(ValueError, match="separable"):
        tiny(mlp_conv="diagonal")


def test_bad_tokens_get_clear_errors():
    model = tiny()
    cond, target = window(2)
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        model.sample(cond.clone().fill_(K))  # the mask token is not a code
    with pytest.raises(ValueError, match="shape"):
        model.sample(cond[:, :1])
    with pytest.raises(ValueError, match="shape"):
        model.log_likelihood_bound(cond, target.flatten(1))


def test_sampling_gives_codes_and_a_finite_deterministic_bound():
    model = tiny().eval()
    cond, _ = window(5)
    tokens, elbo = model.sample(cond, stride=10, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (5, 8, 8) and tokens.dtype == torch.long
    assert tokens.min() >= 0 and tokens.max() < K  # never the mask token
    assert torch.isfinite(elbo).all() and (elbo <= 1e-3).all()
    again = model.sample(cond, stride=10, generator=torch.Generator().manual_seed(0))
    other = model.sample(cond, stride=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(tokens, again[0]) and torch.equal(elbo, again[1])
    assert not torch.equal(elbo, other[1])
    # an untrained model is close to uniform: its entropy estimate is near 64 ln K nats
    assert (-elbo).mean() > 0.5 * 64 * math.log(K)


def test_one_generator_per_window_makes_results_independent_of_the_batch():
    model = tiny().eval()
    cond, target = window(3)
    gens = lambda: [torch.Generator().manual_seed(100 + i) for i in range(3)]  # noqa: E731
    tokens, elbo = model.sample(cond, generator=gens())
    bound = model.log_likelihood_bound(cond, target, generator=gens())
    for i in range(3):
        alone_tokens, alone_elbo = model.sample(cond[i:i + 1], generator=[gens()[i]])
        assert torch.equal(alone_tokens[0], tokens[i])
        torch.testing.assert_close(alone_elbo[0], elbo[i], rtol=1e-4, atol=1e-3)
        alone = model.log_likelihood_bound(cond[i:i + 1], target[i:i + 1], generator=[gens()[i]])
        torch.testing.assert_close(alone[0], bound[i], rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="generators"):
        model.sample(cond, generator=gens()[:2])


def test_likelihood_bound_is_finite_deterministic_and_batch_independent():
    model = tiny().eval()
    cond, target = window(4)
    lb = model.log_likelihood_bound(cond, target, generator=torch.Generator().manual_seed(0))
    assert lb.shape == (4,) and torch.isfinite(lb).all() and (lb < 0).all()
    assert torch.equal(lb, model.log_likelihood_bound(cond, target, generator=torch.Generator().manual_seed(0)))
    # bits per token of an untrained model are around log2 K or worse
    assert (-lb / (64 * math.log(2))).mean() > 0.8 * math.log2(K)


def test_bf16_autocast_is_close_to_fp32():
    model = tiny().eval()
    cond, target = window(4)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    fp32 = model.log_likelihood_bound(cond, target, generator=gen())
    bf16 = model.log_likelihood_bound(cond, target, generator=gen(), amp=True)
    assert torch.isfinite(bf16).all()
    assert ((fp32 - bf16).abs() / fp32.abs()).max() < 0.05
    tokens, elbo = model.sample(cond, generator=gen(), amp=True)
    assert tokens.max() < K and torch.isfinite(elbo).all()


def test_save_load_round_trip_and_codec_check(tmp_path):
    model = tiny()
    codec_dir = tmp_path / "codec"
    save_tensors(codec_dir / "model.safetensors", {"w": torch.ones(3)})
    model.codec = codec_reference(codec_dir)
    model.save_pretrained(tmp_path / "vd", extra={"note": "test"})
    meta = json.loads((tmp_path / "vd" / "config.json").read_text())
    assert meta["kind"] == "vqdiffusion" and meta["config"]["codebook_size"] == K
    assert meta["codec"]["path"] == str(codec_dir.resolve()) and len(meta["codec"]["fingerprint"]) == 64

    loaded = VQDiffusion.from_pretrained(tmp_path / "vd")
    assert loaded.config == model.config and loaded.extra == {"note": "test"}
    cond, target = window(2)
    t = torch.tensor([5, 60])
    assert torch.equal(model(target.flatten(1), t, cond), loaded(target.flatten(1), t, cond))
    assert torch.equal(loaded.timestep_sampler.count, model.timestep_sampler.count)
    assert isinstance(load_video_model(tmp_path / "vd"), VQDiffusion)

    # a retrained codec at the same place, or another codec given explicitly, is refused
    other = tmp_path / "other"
    save_tensors(other / "model.safetensors", {"w": torch.zeros(3)})
    with pytest.raises(CodecMismatchError, match="different weights"):
        VQDiffusion.from_pretrained(tmp_path / "vd", codec=other)
    save_tensors(codec_dir / "model.safetensors", {"w": torch.zeros(3)})
    with pytest.raises(CodecMismatchError):
        VQDiffusion.from_pretrained(tmp_path / "vd")
    with pytest.raises(UserError, match="not a video model"):
        VQDiffusion.from_pretrained(tmp_path / "nothing")


def test_loading_refuses_weights_that_do_not_match_the_config(tmp_path):
    tiny().save_pretrained(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    meta["config"]["width"] = 64
    (tmp_path / "a" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="do not match"):
        VQDiffusion.from_pretrained(tmp_path / "a")


def test_a_few_training_steps_lower_the_loss_on_a_fixed_batch():
    model = tiny(importance_sampling=False)
    cond, _ = window(8, seed=4)
    target = cond[:, -1]  # "nothing moves": the next frame repeats the last one

    def loss_at_fixed_noise():
        with torch.no_grad():
            return sum(model.training_loss(cond, target, generator=torch.Generator().manual_seed(s))[0].item()
                       for s in range(4)) / 4

    before = loss_at_fixed_noise()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        loss, metrics = model.training_loss(cond, target, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(metrics) >= {"loss", "bound_bits_per_token", "aux_ce_bits_per_token"}
    assert loss_at_fixed_noise() < 0.9 * before


@pytest.mark.slow
def test_learns_to_continue_a_moving_pattern():
    """A tiny model learns 'shift the last frame right by one' well below the uniform bound."""
    torch.manual_seed(0)
    model = build("tiny", codebook_size=16, width=64, depth=3, heads=4, cond_width=64)
    gen = torch.Generator().manual_seed(0)

    def batch(n):
        first = torch.randint(0, 16, (n, 8, 8), generator=gen)
        frames = [first, first.roll(1, -1), first.roll(2, -1)]
        return torch.stack(frames[:2], 1), frames[2]

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(600):
        cond, target = batch(32)
        loss, _ = model.training_loss(cond, target, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    cond, target = batch(64)
    bits = -model.log_likelihood_bound(cond, target, generator=gen) / (64 * math.log(2))
    assert bits.mean() < 0.5 * math.log2(16)
    tokens, _ = model.sample(cond, generator=gen)
    assert (tokens == target).float().mean() > 0.5


def test_a_model_saved_with_a_retired_setting_loads_when_it_was_off_and_is_refused_when_on(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "vd")
    meta = json.loads((tmp_path / "vd" / "config.json").read_text())
    meta["config"].update(copy_previous=False, dropout=0.0)  # what models saved before the removal hold
    (tmp_path / "vd" / "config.json").write_text(json.dumps(meta))
    assert VQDiffusion.from_pretrained(tmp_path / "vd").config == model.config
    meta["config"]["copy_previous"] = True
    (tmp_path / "vd" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"copy_previous=True was removed \(see docs/experiments/reach-diagnosis.md\)"):
        VQDiffusion.from_pretrained(tmp_path / "vd")


def test_presets_are_valid_configs():
    for cfg in PRESETS.values():
        assert dataclasses.replace(cfg) == cfg
    with pytest.raises(ValueError):
        build("huge")
    with pytest.raises(ValueError):
        build("tiny", depth=0)


def test_bf16_inference_follows_the_weights_and_matches_fp32():
    """amp=True on a CPU runs a cached bf16 copy of the network: it must give the fp32 bound up to
    bf16 rounding, pick up changed weights (an optimiser step), and never become part of the model."""
    model = tiny().eval()
    cond, target = window(4, seed=2)

    def bounds(amp):
        return model.log_likelihood_bound(cond, target, generator=torch.Generator().manual_seed(0), amp=amp)

    before = bounds(False)
    torch.testing.assert_close(bounds(True), before, rtol=1e-3, atol=0.3)
    with torch.no_grad():  # an in-place update, as an optimiser makes
        model.head.weight.mul_(3.0)
    after = bounds(False)
    assert (after - before).abs().min() > 2  # the update changed the model ...
    torch.testing.assert_close(bounds(True), after, rtol=1e-3, atol=0.3)  # ... and the bf16 copy followed
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not any("bf16" in name for name in model.state_dict())
