"""VideoGPT (VIPER's video model): causality, likelihood, cached sampling, save/load, learning."""

import math

import pytest
import torch

from diffusion_reward.models.video import load_video_model
from diffusion_reward.models.video.videogpt import PRESETS, VideoGPT, build

K = 32


def tiny():
    torch.manual_seed(0)
    return build("tiny", codebook_size=K)


def window(batch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, K, (batch, 2, 8, 8), generator=gen), torch.randint(0, K, (batch, 8, 8), generator=gen)


def test_presets():
    assert (PRESETS["paper"].depth, PRESETS["paper"].heads, PRESETS["paper"].width) == (8, 8, 512)
    assert tiny().num_parameters() < build("small").num_parameters()
    with pytest.raises(ValueError):
        build("huge")


def test_model_is_causal():
    model = tiny()
    cond, target = window(2)
    seq = torch.cat([cond.flatten(1), target.flatten(1)], 1)
    logits = model(seq)
    assert logits.shape == (2, 192, K)
    changed = seq.clone()
    changed[:, 150] = (changed[:, 150] + 1) % K
    other = model(changed)
    assert torch.allclose(logits[:, :151], other[:, :151], atol=1e-6)
    assert not torch.allclose(logits[:, 151:], other[:, 151:])


def test_log_likelihood_matches_cached_sampling_and_the_chain_rule():
    model = tiny().eval()
    cond, _ = window(3)
    tokens, log_prob = model.sample(cond, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (3, 8, 8) and tokens.min() >= 0 and tokens.max() < K
    teacher = model.log_likelihood(cond, tokens)
    torch.testing.assert_close(teacher, log_prob, atol=1e-3, rtol=1e-4)
    assert (teacher < 0).all()
    # an untrained model is nearly uniform
    assert abs(teacher.mean().item() / 64 - (-math.log(K))) < 0.3


def test_sampling_is_deterministic_given_a_generator_and_greedy_with_top_1():
    model = tiny().eval()
    cond, _ = window(2)
    a = model.sample(cond, generator=torch.Generator().manual_seed(1))
    b = model.sample(cond, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0])
    per_window = model.sample(cond, generator=[torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)])
    alone = model.sample(cond[1:], generator=[torch.Generator().manual_seed(8)])
    assert torch.equal(per_window[0][1], alone[0][0])
    greedy, _ = model.sample(cond, top_k=1, generator=torch.Generator().manual_seed(5))
    seq = torch.cat([cond.flatten(1), greedy.flatten(1)], 1)
    assert torch.equal(model(seq)[:, -64:].argmax(-1), greedy.flatten(1))


def test_condition_changes_the_likelihood_and_bad_inputs_are_refused():
    model = tiny()
    cond, target = window(2)
    assert not torch.allclose(model.log_likelihood(cond, target), model.log_likelihood(cond.flip(1), target))
    with pytest.raises(ValueError, match="codes in"):
        model.log_likelihood(cond, target.clone().fill_(K))
    with pytest.raises(ValueError, match="shape"):
        model.sample(cond[:, :1])


def test_save_load_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "gpt")
    loaded = load_video_model(tmp_path / "gpt")
    assert isinstance(loaded, VideoGPT) and loaded.config == model.config
    cond, target = window(2)
    assert torch.equal(model.log_likelihood(cond, target), loaded.log_likelihood(cond, target))


def test_a_few_training_steps_lower_the_loss_and_amp_runs():
    model = tiny()
    cond, _ = window(8, seed=3)
    target = cond[:, -1]
    before = model.training_loss(cond, target)[0].item()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss, metrics = model.training_loss(cond, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.85 * before and metrics["target_bits_per_token"] < math.log2(K)
    ll32 = model.log_likelihood(cond, target)
    ll16 = model.log_likelihood(cond, target, amp=True)
    assert ((ll32 - ll16).abs() / ll32.abs()).max() < 0.05
