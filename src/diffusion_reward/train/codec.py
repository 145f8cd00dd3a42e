"""Training the VQ-GAN codec: the loss recipe (:class:`CodecTask`) and :func:`train_codec`.

Loss of the codec (generator) step::

    L = |x - x_hat|_1 + lpips_weight * LPIPS(x, x_hat) + codebook + beta * commitment
        + [step >= disc_start] * gan_weight * lambda * (-D(x_hat))
    lambda = ||grad L_rec|| / (||grad L_gan|| + 1e-4) at the decoder's last layer

then one discriminator step on the hinge loss of ``D(x)`` and ``D(x_hat.detach())`` (the
discriminator's loss never reaches the codec). :func:`train_codec` reads the episode
datasets, trains through the shared :class:`~diffusion_reward.train.trainer.Trainer`, and
writes the artefact directory: ``config.json`` + ``model.safetensors`` (load with
``VQGAN.from_pretrained``), ``metrics.json`` (PSNR on train and held-out frames, codebook usage
and perplexity; the codes' stability along held-out videos, :func:`token_stability`) and
``reconstructions.png`` (held-out originals above their reconstructions).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from diffusion_reward.config import option, to_dict
from diffusion_reward.data.episodes import DatasetError, EpisodeDataset, load_dataset, policy_filter, policy_slug
from diffusion_reward.models.codec.discriminator import PatchDiscriminator
from diffusion_reward.models.codec.losses import (adaptive_gan_weight, hinge_discriminator_loss,
                                                  hinge_generator_loss, l1_loss)
from diffusion_reward.models.codec.lpips import LPIPS, find_lpips_weights, load_lpips
from diffusion_reward.models.codec.vqgan import (PRESETS, VQGAN, CodecConfig, frames_to_tensor, psnr,
                                                 tensor_to_frames, unchanged_cells)
from diffusion_reward.train.data import FrameDataset, load_frames
from diffusion_reward.train.trainer import (OptimizerSpec, Trainer, TrainerConfig, TrainTask, check_run_dir,
                                            resolve_precision)
from diffusion_reward.utils.checkpoint import atomic_path, atomic_write_json
from diffusion_reward.utils.cpu_load import busy_cores
from diffusion_reward.utils.logging import get_logger
from diffusion_reward.utils.seeding import seed_everything


@dataclasses.dataclass(frozen=True)
class CodecTrainConfig:
    """The codec's losses and optimisers (the network is a :class:`CodecConfig`)."""

    lr: float = option(1e-4, "Adam learning rate of the codec")
    disc_lr: float = option(0.0, "Adam learning rate of the discriminator (0: same as --lr)")
    betas: tuple[float, ...] = option((0.5, 0.9), "Adam betas of both optimisers")
    warmup_steps: int = option(0, "linear learning-rate warm-up steps")
    cosine_decay: bool = option(False, "decay the learning rates along a half cosine to 5% of their peak at the "
                                       "last step of the run (--steps)")
    grad_clip: float = option(0.0, "clip the codec's gradient norm to this (0: no clipping)")
    policy: str = option("expert", "train on split=train episodes of this policy ('' for every policy; 'expert' "
                                   "includes imported videos)")
    crop_size: int = option(0, "train on random crops of this many pixels per side, on the token grid (0: whole "
                               "frames); a codec without attention is convolutional, so it learns as much per "
                               "pixel from crops, at a fraction of the compute per sample")
    whole_frame_fraction: float = option(0.0, "with crop_size: train this fraction of the steps, at the end, on "
                                              "whole frames (as many as make the pixels of one crop batch, at least "
                                              "1), so that GroupNorm meets whole-frame statistics before the codec "
                                              "is used on whole frames")
    l2_weight: float = option(0.0, "weight of a mean-squared-error term added to the L1 reconstruction loss, on "
                                   "pixels in [-1, 1] (PSNR measures squared error; 0: L1 only, as in the paper)")
    foreground_weight: float = option(0.0, "extra weight of the reconstruction loss on foreground pixels, those "
                                           "that differ from the static scene (the per-pixel median of the "
                                           "training frames): a foreground pixel counts 1 + this much, so that "
                                           "the arm, the objects and the goal markers are not traded for the "
                                           "background (0: every pixel alike, as in the paper)")
    disc_start: int = option(1000, "step at which the PatchGAN loss and discriminator training switch on")
    gan_weight: float = option(0.1, "factor on the adaptive GAN weight (0: no discriminator at all)")
    disc_layers: int = option(3, "PatchGAN discriminator: strided convolution layers")
    disc_channels: int = option(64, "PatchGAN discriminator: filters of the first layer")
    lpips_weight: float = option(0.1, "weight of the LPIPS perceptual loss (used only when its weights are found)")
    lpips_vgg: str = option("", "VGG16 ImageNet weights for LPIPS (torch hub layout, features.* keys); "
                                "default: <torch hub dir>/checkpoints/vgg16-397923af.pth")
    lpips_lin: str = option("", "LPIPS linear-layer weights for VGG (v0.1, lin0..lin4 keys); default: "
                                "<torch hub dir>/checkpoints/lpips_vgg.pth or the lpips package's copy")
    eval_frames: int = option(512, "frames for the final PSNR and codebook statistics on training and on "
                                    "held-out frames (a quarter of that for each other policy's test episodes)")
    grid_frames: int = option(8, "held-out frames shown in reconstructions.png")


# Training defaults per preset: (codec losses/optimisers, trainer settings). `small` trains in minutes on two
# CPU cores: 32x32 crops in small batches, whole frames for the last 10% of the steps, L1 + L2, no adversarial
# term; bf16 only where it beats float32. Why: docs/experiments/preset-choices.md. `paper` follows the
# reference recipe.
TRAIN_PRESETS: dict[str, tuple[CodecTrainConfig, TrainerConfig]] = {
    "tiny": (CodecTrainConfig(lr=2e-3, cosine_decay=True, disc_start=150, disc_channels=16, eval_frames=256),
             TrainerConfig(steps=200, batch_size=16, log_every=10, checkpoint_every=100,
                           channels_last=True)),
    "small": (CodecTrainConfig(lr=2e-3, cosine_decay=True, gan_weight=0.0, crop_size=32, whole_frame_fraction=0.1,
                               l2_weight=4.0),
              TrainerConfig(steps=3000, batch_size=8, log_every=50, checkpoint_every=700,
                            channels_last=True)),
    "paper": (CodecTrainConfig(eval_frames=256),
              TrainerConfig(steps=100_000, batch_size=32, log_every=50, checkpoint_every=2000,
                            channels_last=True)),
}


def build_lpips(cfg: CodecTrainConfig) -> LPIPS | None:
    """The LPIPS network when its weights are found (loaded strictly), else ``None`` and one log line."""
    if cfg.lpips_weight <= 0:
        return None
    vgg, lin = find_lpips_weights(cfg.lpips_vgg, cfg.lpips_lin)
    if vgg is None or lin is None:
        from diffusion_reward.models.codec.lpips import default_locations

        vggs, lins = default_locations()
        missing = [f"VGG16 weights ({vggs[0]})"] if vgg is None else []
        missing += [f"LPIPS linear weights ({' or '.join(map(str, lins))})"] if lin is None else []
        get_logger().info(f"LPIPS perceptual loss OFF: no {' and no '.join(missing)}; "
                          "give --lpips-vgg and --lpips-lin to switch it on")
        return None
    model = load_lpips(vgg, lin)
    get_logger().info(f"LPIPS perceptual loss on (weight {cfg.lpips_weight}): {vgg} + {lin}")
    return model


class CodecTask(TrainTask):
    """The VQ-GAN recipe for :class:`Trainer`: modules ``model`` (the :class:`VQGAN`) and ``discriminator``."""

    def __init__(self, model: VQGAN, cfg: CodecTrainConfig, lpips: LPIPS | None = None,
                 eval_frames: np.ndarray | None = None, total_steps: int = 0,
                 whole_frames: FrameDataset | None = None, scene: np.ndarray | None = None):
        self.cfg, self.lpips, self.total_steps, self.scene = cfg, lpips, total_steps, scene
        if not 0.0 <= cfg.whole_frame_fraction <= 1.0:
            raise ValueError(f"whole_frame_fraction must be in [0, 1], got {cfg.whole_frame_fraction}")
        # the last steps of a crop-trained run (whole_frame_fraction of them) draw whole frames from here
        self.whole_frames = whole_frames if cfg.crop_size and cfg.whole_frame_fraction > 0 else None
        self.whole_frames_from = total_steps - round(cfg.whole_frame_fraction * total_steps)
        self.modules: dict[str, torch.nn.Module] = {"model": model}
        if cfg.gan_weight > 0:
            self.modules["discriminator"] = PatchDiscriminator(cfg.disc_layers, cfg.disc_channels)
        self.eval_frames = eval_frames

    def optimizers(self) -> list[OptimizerSpec]:
        c = self.cfg
        betas = (float(c.betas[0]), float(c.betas[1]))
        decay = dict(decay_steps=self.total_steps, final_lr_fraction=0.05) if c.cosine_decay else {}
        specs = [OptimizerSpec("model", ("model",), lr=c.lr, betas=betas, warmup_steps=c.warmup_steps,
                               grad_clip=c.grad_clip, **decay)]  # type: ignore[arg-type]
        if "discriminator" in self.modules:
            # the discriminator starts at disc_start: its schedule counts its own updates
            disc_decay = dict(decay, decay_steps=max(1, self.total_steps - c.disc_start)) if decay else {}
            specs.append(OptimizerSpec("discriminator", ("discriminator",), lr=c.disc_lr or c.lr, betas=betas,
                                       warmup_steps=c.warmup_steps, **disc_decay))  # type: ignore[arg-type]
        return specs

    def config_dict(self) -> dict[str, Any]:
        model: VQGAN = self.modules["model"]  # type: ignore[assignment]
        return {"model": to_dict(model.config), "train": to_dict(self.cfg), "lpips": self.lpips is not None}

    def training_step(self, trainer: Trainer, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        cfg = self.cfg
        raw: VQGAN = trainer.raw("model")  # type: ignore[assignment]
        if self.whole_frames is not None and trainer.step >= self.whole_frames_from:
            x = self._whole_frame_batch(trainer, x)
        weight = None
        if x.shape[1] == 4:  # frames carry the foreground mask (train_codec adds it with foreground_weight)
            x, foreground = x[:, :3], x[:, 3:]
            weight = 1.0 + cfg.foreground_weight * foreground.float()
        with trainer.autocast():
            rec, q = trainer.module("model")(x)
        rec = rec.float()
        l1 = l1_loss(x, rec)
        rec_loss = l1 if weight is None else weighted_mean((x.float() - rec).abs(), weight)
        out: dict[str, torch.Tensor | float] = {}
        if cfg.l2_weight > 0:
            squared = (x.float() - rec).square()
            mse = squared.mean()
            rec_loss = rec_loss + cfg.l2_weight * (mse if weight is None else weighted_mean(squared, weight))
            out["mse"] = mse.detach()
        if self.lpips is not None:
            self.lpips.to(x.device)
            with trainer.autocast():
                perceptual = self.lpips(x, rec).mean()
            rec_loss = rec_loss + cfg.lpips_weight * perceptual.float()
            out["lpips"] = perceptual.detach()
        loss = rec_loss + q.loss
        gan_on = "discriminator" in self.modules and trainer.step >= cfg.disc_start
        if gan_on:
            # the raw discriminator: its gradients here are discarded, no DDP synchronisation needed
            with trainer.autocast():
                logits_fake = trainer.raw("discriminator")(rec)
            g_loss = hinge_generator_loss(logits_fake)
            weight = adaptive_gan_weight(rec_loss, g_loss, raw.last_layer) * cfg.gan_weight
            loss = loss + weight * g_loss
            out.update(g_loss=g_loss.detach(), gan_weight=weight)
        trainer.optimize("model", loss)
        if gan_on:
            with trainer.autocast():
                logits = trainer.module("discriminator")(torch.cat([x, rec.detach()]))
            real, fake = logits.float().split(len(x))
            d_loss = hinge_discriminator_loss(real, fake)
            trainer.optimize("discriminator", d_loss)
            out.update(d_loss=d_loss.detach(), logits_real=real.detach().mean(), logits_fake=fake.detach().mean())
        with torch.no_grad():
            batch_psnr = psnr(x, rec).mean()
        out.update(loss=loss.detach(), l1=l1.detach(), psnr=batch_psnr, codebook_loss=q.loss.detach(),
                   perplexity=q.perplexity, usage=q.usage, revived=float(q.revived))
        # the progress bar shows the first three entries
        return {k: out[k] for k in ("loss", "psnr", "usage")} | {k: v for k, v in out.items()
                                                                  if k not in ("loss", "psnr", "usage")}

    def _whole_frame_batch(self, trainer: Trainer, crops: torch.Tensor) -> torch.Tensor:
        """Whole frames with the pixel count of the crop batch ``crops`` (at least one frame).

        Drawn with PyTorch's global generator, which the trainer seeds per process and checkpoints,
        so a resumed run draws the same frames.
        """
        assert self.whole_frames is not None
        size = self.whole_frames.image_size
        count = max(1, len(crops) * crops.shape[-2] * crops.shape[-1] // (size * size))
        x = self.whole_frames.get_batch(torch.randint(len(self.whole_frames), (count,)))
        x = x.to(trainer.device)
        return x.contiguous(memory_format=torch.channels_last) if trainer.config.channels_last else x

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        if self.eval_frames is None or len(self.eval_frames) == 0:
            return {}
        with trainer.autocast():  # bf16 evaluation moves PSNR by < 0.01 dB and is 2-3x faster on CPUs
            return evaluate_codec(trainer.raw("model"), self.eval_frames,  # type: ignore[arg-type]
                                  scene=self.scene)


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, C, H, W) with per-pixel ``weight`` (B, 1, H, W), normalised by the weights."""
    return (values * weight).sum() / (weight.sum() * values.shape[1]).clamp_min(1e-12)


FOREGROUND_LEVELS = 24
"""A pixel is foreground when one of its channels differs from the static scene by more than this
many of the 255 levels."""


def static_scene(frames: np.ndarray, sample: int = 2048) -> np.ndarray:
    """The per-pixel median of up to ``sample`` evenly spaced frames, ``uint8 (H, W, 3)``: what stays in
    place across the data (floor, table, robot base), from which the arm, the objects and the goal
    markers differ."""
    return np.median(frames[_evenly(len(frames), sample), ..., :3], axis=0).round().astype(np.uint8)


def foreground_mask(frames: np.ndarray, scene: np.ndarray) -> np.ndarray:
    """``bool (N, H, W)``: the pixels of ``uint8 (N, H, W, 3)`` frames that differ from ``scene``
    by more than :data:`FOREGROUND_LEVELS` in some channel."""
    diff = np.abs(frames[..., :3].astype(np.int16) - scene.astype(np.int16))
    return diff.max(axis=-1) > FOREGROUND_LEVELS


@torch.no_grad()
def evaluate_codec(model: VQGAN, frames: np.ndarray, batch_size: int = 256,
                   scene: np.ndarray | None = None) -> dict[str, float]:
    """PSNR (dB, mean over frames), codebook usage (fraction of codes used) and perplexity on ``frames``.

    With a ``scene`` (:func:`static_scene`) also ``psnr_foreground``: the PSNR of the foreground
    pixels alone (:func:`foreground_mask`, their squared errors pooled over all frames), and
    ``foreground_fraction``. The foreground is where the task is: the arm, the objects, the goal
    markers; the whole-frame PSNR is dominated by the static background.
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(model.config.codebook_size, dtype=torch.float64)
    total_psnr, n = 0.0, 0
    fg_error, fg_pixels = 0.0, 0
    for i in range(0, len(frames), batch_size):
        chunk = frames[i:i + batch_size]
        x = frames_to_tensor(chunk).to(model.device)
        rec, q = model(x)
        total_psnr += float(psnr(x, rec).sum())
        n += len(x)
        counts += torch.bincount(q.indices.flatten().cpu(), minlength=model.config.codebook_size).double()
        if scene is not None:
            mask = torch.from_numpy(foreground_mask(chunk, scene))
            error = (torch.from_numpy(chunk).float() - torch.from_numpy(tensor_to_frames(rec)).float()).square()
            fg_error += float(error.mean(-1)[mask].sum())
            fg_pixels += int(mask.sum())
    model.train(was_training)
    probs = counts / counts.sum().clamp_min(1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    out = {"psnr": total_psnr / max(n, 1), "codebook_usage": float((counts > 0).double().mean()),
           "perplexity": float(entropy.exp()), "frames": float(n)}
    if scene is not None:
        out["foreground_fraction"] = fg_pixels / max(n * frames.shape[1] * frames.shape[2], 1)
        out["psnr_foreground"] = (10 * math.log10(255.0 ** 2 / max(fg_error / fg_pixels, 1e-10))
                                  if fg_pixels else math.nan)
    return out


def token_stability(model: VQGAN, episodes: Sequence[np.ndarray]) -> dict[str, float]:
    """How steady the codes are along videos (``uint8 (T, H, W, 3)`` episodes, consecutive frames).

    ``tokens_changed_per_step``: codes of the grid that change between consecutive frames.
    ``token_flicker``: the fraction of grid cells whose pixels are identical in the two frames but
    whose code changes anyway: the encoder's view reaches past its own cell, so a move next door can
    recode a patch that did not change. The video model has to predict every change of code; the
    flicker carries no information about the scene, and the entropy reward reads it as uncertainty
    (measured: codecs of the same recipe and two seeds flickered on 18% and 6% of unchanged cells).
    """
    grid = model.config.token_grid
    changed = flicker = still = steps = 0
    for frames in episodes:
        if len(frames) < 2:
            continue
        codes = model.encode_frames(frames).numpy()
        same = unchanged_cells(frames, grid)[1:]  # (T-1, grid, grid)
        moved = codes[1:] != codes[:-1]
        changed += int(moved.sum())
        flicker += int((moved & same).sum())
        still += int(same.sum())
        steps += len(frames) - 1
    if steps == 0:
        return {}
    return {"tokens_changed_per_step": changed / steps, "token_flicker": flicker / max(still, 1)}


def reconstruction_grid(model: VQGAN, frames: np.ndarray, scale: int = 2) -> np.ndarray:
    """``uint8`` image: originals in the top row, their reconstructions below, scaled ``scale`` times."""
    model.eval()
    with torch.no_grad():
        rec = tensor_to_frames(model(frames_to_tensor(frames).to(model.device))[0])
    grid = np.concatenate([np.concatenate(list(frames), 1), np.concatenate(list(rec), 1)], 0)
    return grid.repeat(scale, 0).repeat(scale, 1)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


@dataclasses.dataclass
class CodecResult:
    """What :func:`train_codec` produced (on rank 0; other processes get ``metrics = {}``)."""

    artefact: Path
    run_dir: Path
    metrics: dict[str, Any]


def _warn_if_cpu_is_busy(cfg: TrainerConfig) -> None:
    """Multi-threaded CPU training slows down several times when other processes hold the cores.

    The load is measured now, before training starts (:func:`busy_cores`), not read from the load
    average, which still counts a job that ended a minute ago."""
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return
    threads = cfg.threads or torch.get_num_threads()
    busy, cores = busy_cores(), os.cpu_count() or 1
    if threads > 1 and busy is not None and busy >= min(threads, cores) - 0.5:
        get_logger().warning(f"the CPU is busy (other processes keep {busy:.1f} of {cores} cores busy): training "
                             f"on {threads} threads can run several times slower than on one; consider --threads 1")


def _evenly(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(int))


def train_codec(data: EpisodeDataset | str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
                preset: str = "small", model_config: CodecConfig | None = None,
                train_config: CodecTrainConfig | None = None, trainer_config: TrainerConfig | None = None
                ) -> CodecResult:
    """Train a codec on the ``split=train`` frames of ``data`` and write its artefact directory.

    ``model_config`` / ``train_config`` / ``trainer_config`` default to the ``preset``'s; the run
    directory defaults to ``runs/codec-<preset>`` and the artefact to ``<run dir>/model``. The
    held-out frames (``split=test`` episodes of the policies trained on) give the held-out PSNR
    and the reconstruction grid; ``split=test`` episodes of other policies (random, noisy) are
    evaluated apart (``test_<policy>/psnr``...). At most ``eval_frames`` frames per set.
    """
    log = get_logger()
    if preset not in PRESETS:
        raise ValueError(f"unknown codec preset {preset!r}; choose from {sorted(PRESETS)}")
    model_config = model_config or PRESETS[preset]
    preset_train, preset_trainer = TRAIN_PRESETS[preset]
    train_config = train_config or preset_train
    trainer_config = trainer_config or preset_trainer
    if not trainer_config.run_dir:
        trainer_config = dataclasses.replace(trainer_config, run_dir=f"runs/codec-{preset}")
    trainer_config = resolve_precision(trainer_config)
    run_dir = Path(trainer_config.run_dir)
    out = Path(out) if out is not None else run_dir / "model"
    check_run_dir(trainer_config)

    t_start = time.perf_counter()
    dataset = data if isinstance(data, EpisodeDataset) else load_dataset(data)
    wanted = policy_filter(train_config.policy)
    train_frames = load_frames(dataset, split="train", policy=wanted)
    size = model_config.image_size
    if train_frames.shape[1:3] != (size, size):
        raise DatasetError(f"{', '.join(map(str, dataset.roots))}: frames are {train_frames.shape[2]}x"
                           f"{train_frames.shape[1]}, the codec expects {size}x{size} (--image-size)")
    rng = np.random.default_rng(trainer_config.seed)

    def subsample(frames: np.ndarray, n: int) -> np.ndarray:
        return frames[np.sort(rng.choice(len(frames), min(n, len(frames)), replace=False))]

    # held out = split=test episodes of the policies trained on; other policies are reported apart
    policies = sorted({e["policy"] for e in dataset.select(split="train", policy=wanted).entries})
    evals: dict[str, np.ndarray] = {"train": subsample(train_frames, train_config.eval_frames)}
    held = dataset.select(split="test", policy=policies)
    if len(held):
        evals["test"] = subsample(load_frames(held, split="test"), train_config.eval_frames)
    else:
        log.warning("no split=test episodes of the training policies: held-out PSNR is skipped and the grid "
                    "shows training frames")
    for policy in sorted(set(dataset.select(split="test").policies) - set(policies)):
        other = dataset.select(split="test", policy=policy)
        other.entries = [other.entries[i] for i in _evenly(len(other), 8)]  # a few episodes are plenty
        evals[f"test_{policy_slug(policy)}"] = subsample(load_frames(other, split="test"),
                                                         max(1, train_config.eval_frames // 4))
    log.info(f"codec {preset}: {len(train_frames)} training frames from {len(dataset.select(split='train'))} "
             f"episodes ({', '.join(policies)}); held-out episodes: {len(held)}"
             f"{'; other policies: ' + ', '.join(k[5:] for k in evals if k.startswith('test_')) if len(evals) > 2 else ''}"
             f" (loaded in {time.perf_counter() - t_start:.1f}s)")
    held_out = evals.get("test", evals["train"])
    # whole episodes for the codes' stability along a video: up to 8 held-out ones (training ones without)
    steady_split = "test" if len(held) else "train"
    steady_set = held if len(held) else dataset.select(split="train", policy=wanted)
    steady = [steady_set[int(i)].frames for i in _evenly(len(steady_set), 8)]
    periodic = held_out[:256]

    scene = static_scene(train_frames)
    if train_config.foreground_weight < 0:
        raise ValueError(f"foreground_weight must be >= 0, got {train_config.foreground_weight}")
    if train_config.foreground_weight > 0:  # the mask travels with the frames as a fourth channel
        mask = foreground_mask(train_frames, scene)
        log.info(f"foreground weighting: {100 * mask.mean():.1f}% of the training pixels count "
                 f"{1 + train_config.foreground_weight:g}x")
        train_frames = np.concatenate([train_frames, (mask[..., None] * np.uint8(255)).astype(np.uint8)], axis=-1)

    _warn_if_cpu_is_busy(trainer_config)
    seed_everything(trainer_config.seed)
    model = VQGAN(model_config)
    task = CodecTask(model, train_config, lpips=build_lpips(train_config), eval_frames=periodic,
                     total_steps=trainer_config.steps, whole_frames=FrameDataset(train_frames), scene=scene)
    log.info(f"codec {preset}: {model.num_parameters() / 1e6:.2f}M parameters, {model_config.token_grid}x"
             f"{model_config.token_grid} tokens, codebook {model_config.codebook_size} x {model_config.codebook_dim}; "
             f"{trainer_config.steps} steps of batch {trainer_config.batch_size}, "
             f"{'bf16' if trainer_config.bf16 else 'fp32'}")
    metrics: dict[str, Any] = {}
    stride = size // model_config.token_grid
    if train_config.crop_size and (model_config.attn_resolutions or model_config.mid_attention):
        raise ValueError("crop_size needs a codec without self-attention (attn_resolutions=() and "
                         "no mid_attention): attention would learn the context of a crop, not of a frame")
    train_data = FrameDataset(train_frames, crop=train_config.crop_size, align=stride)
    with Trainer(task, train_data, trainer_config) as trainer:
        trainer.fit()
        if trainer.is_main:
            t_eval = time.perf_counter()
            with trainer.ema_weights(), trainer.autocast():
                for split, frames in evals.items():
                    metrics.update({f"{split}/{k}": v for k, v in evaluate_codec(model, frames, scene=scene).items()})
                grid = reconstruction_grid(model, held_out[_evenly(len(held_out), train_config.grid_frames)])
                metrics.update({f"{steady_split}/{k}": v for k, v in token_stability(model, steady).items()})
            trainer.log_final(metrics)
            metrics.update({"steps": trainer.step, "wall_time_s": time.perf_counter() - t_start,
                            "eval_time_s": time.perf_counter() - t_eval, "preset": preset,
                            "parameters": model.num_parameters(), "precision": "bf16" if trainer_config.bf16 else "fp32",
                            "train_frames": len(train_frames),
                            "test_episodes": len(held),
                            "datasets": [str(r) for r in dataset.roots], "run_dir": str(run_dir)})
        trainer.export(out, extra={"metrics": metrics} if metrics else None)
        if trainer.is_main:
            atomic_write_json(out / "metrics.json", metrics)
            save_png(out / "reconstructions.png", grid)
    return CodecResult(artefact=out, run_dir=run_dir, metrics=metrics)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """The headline numbers of a codec run, one line."""
    parts = []
    splits = sorted({k.split("/")[0] for k in metrics if k.endswith("/psnr")}, key=lambda s: (s != "train", s))
    for split in splits:
        if f"{split}/psnr" in metrics:
            foreground = metrics.get(f"{split}/psnr_foreground")
            parts.append(f"{split}: PSNR {metrics[f'{split}/psnr']:.2f} dB"
                         + (f" (foreground {foreground:.2f} dB)" if foreground is not None else "")
                         + f", codebook usage {100 * metrics[f'{split}/codebook_usage']:.1f}%, "
                           f"perplexity {metrics[f'{split}/perplexity']:.0f}"
                         + (f", {metrics[f'{split}/tokens_changed_per_step']:.1f} codes changed per step "
                            f"(flicker {100 * metrics[f'{split}/token_flicker']:.1f}% of unchanged cells)"
                            if f"{split}/token_flicker" in metrics else ""))
    if "wall_time_s" in metrics:
        parts.append(f"{metrics['steps']} steps in {metrics['wall_time_s']:.0f}s")
    return "; ".join(parts)
