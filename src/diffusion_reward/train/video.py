"""Training the conditional video models (VQ-Diffusion, VideoGPT) on codec tokens of episode windows.

:func:`train_video` tokenises every episode of the datasets once with the codec (cached in a
safetensors file keyed by the codec's fingerprint), trains on windows of ``k + 1`` token grids
(``frame_skip`` apart; windows reaching before an episode's start repeat its first frame, as
the reward does) from the ``split=train`` episodes of the training policy, through the shared
:class:`~diffusion_reward.train.trainer.Trainer` (resume, DDP, bf16, EMA), and writes:

* the artefact directory: ``config.json`` (model config + the codec's path and weights
  fingerprint) + ``model.safetensors`` (EMA weights when EMA is on), loadable with
  ``VQDiffusion.from_pretrained`` / ``VideoGPT.from_pretrained`` / ``load_video_model``;
* ``metrics.json``: on held-out (``split=test``) windows of the training policy, the bound
  (VQ-Diffusion; the exact NLL for VideoGPT) in **bits per token**, next to the uniform
  baseline ``log2 K``, the same on training windows and on windows of another policy
  (``random`` by default) when the data has them, and the sample-entropy estimate (the
  entropy reward's quantity) on held-out and other-policy windows;
* ``samples.png``: per row, the conditioning frames, the true next frame, its codec
  reconstruction and several sampled next frames (decoded by the codec).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch

from diffusion_reward.config import option, retired, to_dict
from diffusion_reward.data.episodes import DatasetError, EpisodeDataset, load_dataset, policy_filter
from diffusion_reward.errors import UserError
from diffusion_reward.models.codec.vqgan import keep_unchanged_codes, unchanged_cells
from diffusion_reward.models.video import VIDEO_MODELS, VideoModelArtefact, codec_reference, videogpt, vqdiffusion
from diffusion_reward.models.video.videogpt import VideoGPTConfig
from diffusion_reward.models.video.vqdiffusion import VQDiffusion, VQDiffusionConfig
from diffusion_reward.train.data import WindowDataset
from diffusion_reward.train.trainer import (OptimizerSpec, Trainer, TrainerConfig, TrainTask, check_run_dir,
                                            resolve_precision)
from diffusion_reward.utils.checkpoint import atomic_path, atomic_write_json, load_tensors, save_tensors
from diffusion_reward.utils.device import resolve_device
from diffusion_reward.utils.logging import get_logger
from diffusion_reward.utils.seeding import seed_everything

ModelKind = Literal["vqdiffusion", "videogpt"]
MODEL_PRESETS: dict[str, dict[str, Any]] = {"vqdiffusion": vqdiffusion.PRESETS, "videogpt": videogpt.PRESETS}


@dataclasses.dataclass(frozen=True)
class VideoTrainConfig:
    """Optimiser, data selection and evaluation of a video-model run (the network is its own config)."""

    lr: float = option(4.5e-4, "peak AdamW learning rate, reached at the end of the warm-up")
    betas: tuple[float, ...] = option((0.9, 0.96), "AdamW betas")
    weight_decay: float = option(0.045, "AdamW weight decay (weight matrices and embeddings only)")
    warmup_steps: int = option(5000, "linear learning-rate warm-up steps")
    grad_clip: float = option(0.5, "clip the global gradient norm to this (0: no clipping)")
    cosine_decay: bool = option(False, "after the warm-up, decay the learning rate along a half cosine to 10% at "
                                       "the last step (--steps); otherwise keep it constant")
    policy: str = option("expert", "train (and evaluate) on episodes of this policy ('' for every policy; 'expert' "
                                   "includes imported videos)")
    compare_policy: str = option("random", "also score windows of this policy's episodes (any split) when the data "
                                           "has them ('' to skip)")
    eval_windows: int = option(512, "held-out windows (evenly spread) for the final scores")
    periodic_eval_windows: int = option(128, "held-out windows for the bound logged every --eval-every steps")
    eval_stride: int = option(10, "stride of the diffusion chain when scoring (VQ-Diffusion)")
    grid_rows: int = option(6, "held-out windows shown in samples.png")
    grid_samples: int = option(3, "sampled next frames per window in samples.png")
    token_cache: str = option("", "file caching the datasets' codec tokens (default: <run dir>/tokens.safetensors)")
    RETIRED: ClassVar[dict[str, tuple[Any, str]]] = {
        "shift": retired(0, "docs/experiments/reach-diagnosis.md"),
        "still": retired(0.0, "docs/experiments/reach-diagnosis.md"),
    }


# Per model kind and preset: (optimiser/data/eval settings, trainer settings). The small presets train in
# float32 on two CPU cores in 15-20 minutes; why these lengths and precisions: docs/experiments/preset-choices.md.
# `paper` leaves bf16 on auto: on where it is fast (GPUs).
TRAIN_PRESETS: dict[str, dict[str, tuple[VideoTrainConfig, TrainerConfig]]] = {
    "vqdiffusion": {
        "tiny": (VideoTrainConfig(lr=1e-3, warmup_steps=10, eval_windows=32, periodic_eval_windows=16,
                                  grid_rows=2, grid_samples=2),
                 TrainerConfig(steps=30, batch_size=16, log_every=10, checkpoint_every=20, ema_decay=0.9,
                               bf16=False)),
        "small": (VideoTrainConfig(lr=1e-3, warmup_steps=100, cosine_decay=True, eval_windows=256),
                  TrainerConfig(steps=3300, batch_size=32, log_every=25, eval_every=400, checkpoint_every=400,
                                ema_decay=0.99, bf16=False)),
        # the reference averaged with decay 0.99 every 25 steps: 0.99 ** (1 / 25) per step
        "paper": (VideoTrainConfig(),
                  TrainerConfig(steps=100_000, batch_size=32, log_every=50, eval_every=5000,
                                checkpoint_every=2000, ema_decay=0.9996)),
    },
    "videogpt": {
        "tiny": (VideoTrainConfig(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01, warmup_steps=10, grad_clip=1.0,
                                  eval_windows=32, periodic_eval_windows=16, grid_rows=2, grid_samples=2),
                 TrainerConfig(steps=30, batch_size=16, log_every=10, checkpoint_every=20, bf16=False)),
        "small": (VideoTrainConfig(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01, warmup_steps=200, grad_clip=1.0,
                                   cosine_decay=True, eval_windows=256),
                  TrainerConfig(steps=1200, batch_size=32, log_every=25, eval_every=400, checkpoint_every=400,
                                bf16=False)),
        "paper": (VideoTrainConfig(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.01, warmup_steps=2000, grad_clip=1.0),
                  TrainerConfig(steps=100_000, batch_size=32, log_every=50, eval_every=5000, checkpoint_every=2000)),
    },
}


# ----------------------------------------------------------------------------- tokens
def _episode_key(dataset: EpisodeDataset, i: int) -> str:
    return str(dataset.path(i).resolve())


def tokenize_episodes(codec: Any, dataset: EpisodeDataset, cache: str | os.PathLike | None,
                      fingerprint: str, batch_size: int = 256) -> list[np.ndarray]:
    """The codec tokens ``int16 (T, g, g)`` of every episode of ``dataset``, in order.

    Tokens already in ``cache`` (a safetensors file made by an earlier call with the same codec
    fingerprint) are reused; the others are computed and the cache rewritten (by rank 0 only).
    """
    log = get_logger()
    cached: dict[str, torch.Tensor] = {}
    cache = Path(cache) if cache else None
    if cache is not None and cache.is_file():
        from safetensors import safe_open

        with safe_open(str(cache), framework="pt") as f:
            if (f.metadata() or {}).get("codec_fingerprint") == fingerprint:
                cached = load_tensors(cache)
            else:
                log.info(f"{cache}: made with another codec; tokenising again")
    keys = [_episode_key(dataset, i) for i in range(len(dataset))]
    missing = [i for i, key in enumerate(keys) if key not in cached]
    if missing:
        t0, frames = time.perf_counter(), 0
        for i in missing:
            episode = dataset[i]
            cached[keys[i]] = codec.encode_frames(episode.frames, batch_size=batch_size).to(torch.int16)
            frames += len(episode)
        log.info(f"tokenised {frames} frames of {len(missing)} episodes in {time.perf_counter() - t0:.1f}s")
        if cache is not None and int(os.environ.get("RANK", 0)) == 0:
            save_tensors(cache, cached, metadata={"codec_fingerprint": fingerprint})
    return [cached[key].numpy() for key in keys]


def _windows(tokens: Sequence[np.ndarray], length: int, skip: int,
             same: Sequence[np.ndarray] | None = None) -> WindowDataset:
    """Windows of token grids; with ``same`` (per episode, :func:`unchanged_cells`) each window's
    unchanged cells keep the previous frame's code (``sticky_codes``)."""
    if same is None:
        return WindowDataset(tokens, length=length, skip=skip, pad_start=True, transform=lambda b: b.long())
    items = [np.stack([t.astype(np.int16), m.astype(np.int16)], axis=1) for t, m in zip(tokens, same)]
    return WindowDataset(items, length=length, skip=skip, pad_start=True,
                         transform=lambda b: keep_unchanged_codes(b[:, :, 0].long(), b[:, :, 1].bool()))


def unchanged_masks(dataset: EpisodeDataset, grid: int, skip: int) -> list[np.ndarray]:
    """:func:`unchanged_cells` of every episode of ``dataset``, in order."""
    return [unchanged_cells(dataset[i].frames, grid, skip) for i in range(len(dataset))]


def _evenly(n: int, k: int) -> torch.Tensor:
    return torch.from_numpy(np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(np.int64)))


# ----------------------------------------------------------------------------- scores
@torch.no_grad()
def bits_per_token(model: VideoModelArtefact, windows: torch.Tensor, stride: int = 10, batch_size: int = 256,
                   seed: int = 0, amp: bool = False) -> np.ndarray:
    """Per-window ``-log p(next frame | previous frames)`` in bits per token.

    ``windows`` are long ``(W, k+1, g, g)``. VQ-Diffusion: a one-sample estimate of the
    (upper) bound along the strided chain; VideoGPT: the exact negative log-likelihood.
    """
    k, n = model.config.cond_frames, model.config.num_tokens
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size].to(device)
        if isinstance(model, VQDiffusion):
            gen = torch.Generator(device).manual_seed(seed + i)
            nats = model.log_likelihood_bound(w[:, :k], w[:, k], stride=stride, generator=gen, amp=amp)
        else:
            nats = model.log_likelihood(w[:, :k], w[:, k], amp=amp)
        out.append((-nats / (n * math.log(2))).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def sample_entropy_bits_per_token(model: VideoModelArtefact, windows: torch.Tensor, stride: int = 10,
                                  batch_size: int = 256, seed: int = 0, amp: bool = False) -> np.ndarray:
    """Per-window one-sample estimate of ``H(next frame | previous frames)`` in bits per token
    (minus the model's score of its own sample: the quantity behind the entropy reward)."""
    k, n = model.config.cond_frames, model.config.num_tokens
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(windows), batch_size):
        w = windows[i:i + batch_size].to(device)
        gen = torch.Generator(device).manual_seed(seed + i)
        if isinstance(model, VQDiffusion):
            _, nats = model.sample(w[:, :k], stride=stride, generator=gen, amp=amp)
        else:
            _, nats = model.sample(w[:, :k], generator=gen, amp=amp)
        out.append((-nats / (n * math.log(2))).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def sample_grid(model: VideoModelArtefact, codec: Any, frames: np.ndarray, windows: torch.Tensor,
                samples: int = 3, stride: int = 10, seed: int = 0, scale: int = 2) -> np.ndarray:
    """``uint8`` image, one row per window: conditioning frames | true next frame | its codec
    reconstruction | ``samples`` sampled next frames (decoded), separated by white gaps.

    ``frames`` are the windows' original frames ``uint8 (W, k+1, H, W, 3)``; ``windows`` their
    tokens ``(W, k+1, g, g)``.
    """
    k = model.config.cond_frames
    device = next(model.parameters()).device
    cond = windows[:, :k].to(device)
    drawn = []
    for s in range(samples):
        gen = torch.Generator(device).manual_seed(seed + s)
        if isinstance(model, VQDiffusion):
            tokens, _ = model.sample(cond, stride=stride, generator=gen)
        else:
            tokens, _ = model.sample(cond, generator=gen)
        drawn.append(codec.decode_to_frames(tokens.cpu()))
    recon = codec.decode_to_frames(windows[:, k])
    size = frames.shape[2]
    gap = np.full((size, 2, 3), 255, np.uint8)
    rows = []
    for r in range(len(frames)):
        cells = [frames[r, j] for j in range(k)] + [gap, frames[r, k], recon[r], gap] + [d[r] for d in drawn]
        rows.append(np.concatenate(cells, 1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows[:-1], 0)
    return grid.repeat(scale, 0).repeat(scale, 1)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


# ----------------------------------------------------------------------------- task
class VideoTask(TrainTask):
    """The training recipe of a video model for :class:`Trainer`: one module, ``model``."""

    def __init__(self, model: VideoModelArtefact, cfg: VideoTrainConfig, eval_windows: torch.Tensor | None = None,
                 total_steps: int = 0):
        self.modules: dict[str, torch.nn.Module] = {"model": model}
        self.cfg = cfg
        self.eval_windows = eval_windows
        self.total_steps = total_steps

    def optimizers(self) -> list[OptimizerSpec]:
        c = self.cfg
        return [OptimizerSpec("model", ("model",), lr=c.lr, kind="adamw", betas=(float(c.betas[0]), float(c.betas[1])),
                              weight_decay=c.weight_decay, warmup_steps=c.warmup_steps, grad_clip=c.grad_clip,
                              decay_steps=self.total_steps if c.cosine_decay else 0, final_lr_fraction=0.1)]

    def config_dict(self) -> dict[str, Any]:
        model: VideoModelArtefact = self.modules["model"]  # type: ignore[assignment]
        return {"kind": model.kind, "model": to_dict(model.config), "train": to_dict(self.cfg), "codec": model.codec}

    def training_step(self, trainer: Trainer, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        raw: VideoModelArtefact = trainer.raw("model")  # type: ignore[assignment]
        k = raw.config.cond_frames
        with trainer.autocast():
            loss, metrics = raw.training_loss(batch[:, :k], batch[:, k], net=trainer.module("model"))
        trainer.optimize("model", loss)
        return {name: value.detach() for name, value in metrics.items()}

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        if self.eval_windows is None or len(self.eval_windows) == 0:
            return {}
        model: VideoModelArtefact = trainer.raw("model")  # type: ignore[assignment]
        bits = bits_per_token(model, self.eval_windows, stride=self.cfg.eval_stride, amp=trainer.config.bf16)
        return {"test_bits_per_token": float(bits.mean())}


# ----------------------------------------------------------------------------- entry point
@dataclasses.dataclass
class VideoResult:
    """What :func:`train_video` produced (on rank 0; other processes get ``metrics = {}``)."""

    artefact: Path
    run_dir: Path
    metrics: dict[str, Any]


def train_video(data: EpisodeDataset | str | os.PathLike | Sequence[str | os.PathLike], codec: str | os.PathLike,
                model: ModelKind = "vqdiffusion", out: str | os.PathLike | None = None, preset: str = "small",
                model_config: VQDiffusionConfig | VideoGPTConfig | None = None,
                train_config: VideoTrainConfig | None = None,
                trainer_config: TrainerConfig | None = None) -> VideoResult:
    """Train a conditional video model on the codec tokens of ``data`` and write its artefact.

    ``model`` is ``vqdiffusion`` or ``videogpt``; ``codec`` the codec directory (its codebook
    size and token grid override the model config's). ``model_config`` / ``train_config`` /
    ``trainer_config`` default to the ``preset``'s; the run directory defaults to
    ``runs/video-<model>-<preset>`` and the artefact to ``<run dir>/model``.
    """
    from diffusion_reward.models.codec import VQGAN

    log = get_logger()
    if model not in VIDEO_MODELS:
        raise UserError(f"unknown video model {model!r}; choose from {sorted(VIDEO_MODELS)}")
    if preset not in MODEL_PRESETS[model]:
        raise UserError(f"unknown {model} preset {preset!r}; choose from {sorted(MODEL_PRESETS[model])}")
    preset_train, preset_trainer = TRAIN_PRESETS[model][preset]
    train_config = train_config or preset_train
    trainer_config = trainer_config or preset_trainer
    if not trainer_config.run_dir:
        trainer_config = dataclasses.replace(trainer_config, run_dir=f"runs/video-{model}-{preset}")
    trainer_config = resolve_precision(trainer_config)
    run_dir = Path(trainer_config.run_dir)
    out = Path(out) if out is not None else run_dir / "model"
    t_start = time.perf_counter()
    check_run_dir(trainer_config)

    device = resolve_device(trainer_config.device)
    try:
        codec_net = VQGAN.from_pretrained(codec, device=device)
    except FileNotFoundError as exc:
        raise UserError(f"{codec}: cannot load the codec ({exc})") from None
    reference = codec_reference(codec)
    model_class = VIDEO_MODELS[model]
    base = model_config if model_config is not None else MODEL_PRESETS[model][preset]
    if not isinstance(base, model_class.config_class):
        raise UserError(f"model_config is a {type(base).__name__}, {model} needs a {model_class.config_class.__name__}")
    model_config = dataclasses.replace(base, codebook_size=codec_net.config.codebook_size,
                                       grid=codec_net.config.token_grid)
    k, skip = model_config.cond_frames, model_config.frame_skip

    dataset = data if isinstance(data, EpisodeDataset) else load_dataset(data)
    policy = policy_filter(train_config.policy)
    train_eps = dataset.select(split="train", policy=policy)
    if len(train_eps) == 0:
        raise DatasetError(f"{', '.join(map(str, dataset.roots))}: no split=train episodes of policy "
                           f"{train_config.policy or 'any'} to train on")
    size = codec_net.config.image_size
    if dataset.image_size not in (None, size):
        raise DatasetError(f"{', '.join(map(str, dataset.roots))}: frames are {dataset.image_size}px, the codec "
                           f"expects {size}px")
    test_eps = dataset.select(split="test", policy=policy)
    compare_eps = (dataset.select(policy=train_config.compare_policy) if train_config.compare_policy
                   else dataset.select(policy=[]))
    cache = train_config.token_cache or run_dir / "tokens.safetensors"
    codec_net.eval()
    tokens = {name: tokenize_episodes(codec_net, eps, cache, reference["fingerprint"]) if len(eps) else []
              for name, eps in (("train", train_eps), ("test", test_eps), ("compare", compare_eps))}
    grid = codec_net.config.token_grid
    same = {name: unchanged_masks(eps, grid, skip) if model_config.sticky_codes and len(eps) else None
            for name, eps in (("train", train_eps), ("test", test_eps), ("compare", compare_eps))}
    train_data = _windows(tokens["train"], k + 1, skip, same["train"])
    held = _windows(tokens["test"], k + 1, skip, same["test"]) if tokens["test"] else None
    if held is None:
        log.warning("no split=test episodes: the held-out scores are skipped and samples.png shows training windows")
    periodic = held.get_batch(_evenly(len(held), train_config.periodic_eval_windows)) if held else None
    log.info(f"video {model} {preset}: {len(train_data)} training windows from {len(train_eps)} episodes, "
             f"{0 if held is None else len(held)} held-out windows, {len(compare_eps)} "
             f"'{train_config.compare_policy}' episodes (ready in {time.perf_counter() - t_start:.1f}s)")

    seed_everything(trainer_config.seed)
    net = model_class(model_config)
    net.codec = reference
    task = VideoTask(net, train_config, eval_windows=periodic, total_steps=trainer_config.steps)
    log.info(f"video {model} {preset}: {net.num_parameters() / 1e6:.2f}M parameters, condition {k} frames "
             f"(skip {skip}), codebook {model_config.codebook_size}; {trainer_config.steps} steps of batch "
             f"{trainer_config.batch_size}, {'bf16' if trainer_config.bf16 else 'fp32'}")
    metrics: dict[str, Any] = {}
    with Trainer(task, train_data, trainer_config) as trainer:
        trainer.fit()
        t_train = time.perf_counter() - t_start
        if trainer.is_main:
            t_eval = time.perf_counter()
            net.eval()
            with trainer.ema_weights():
                metrics = _final_scores(net, train_config, train_data, held,
                                        _windows(tokens["compare"], k + 1, skip, same["compare"])
                                        if tokens["compare"] else None,
                                        amp=trainer_config.bf16)
                grid = _grid(net, codec_net, train_config, test_eps if held else train_eps,
                             tokens["test"] if held else tokens["train"], k, skip)
            trainer.log_final({name: v for name, v in metrics.items() if isinstance(v, float)})
            metrics.update({"model": model, "preset": preset, "steps": trainer.step, "parameters": net.num_parameters(),
                            "train_time_s": t_train, "eval_time_s": time.perf_counter() - t_eval,
                            "wall_time_s": time.perf_counter() - t_start,
                            "precision": "bf16" if trainer_config.bf16 else "fp32",
                            "train_windows": len(train_data), "datasets": [str(r) for r in dataset.roots],
                            "codec": reference, "run_dir": str(run_dir)})
        trainer.export(out, extra={"metrics": metrics} if metrics else None)
        if trainer.is_main:
            atomic_write_json(out / "metrics.json", metrics)
            save_png(out / "samples.png", grid)
    return VideoResult(artefact=out, run_dir=run_dir, metrics=metrics)


def _final_scores(net: VideoModelArtefact, cfg: VideoTrainConfig, train_data: WindowDataset,
                  held: WindowDataset | None, compare: WindowDataset | None, amp: bool) -> dict[str, Any]:
    """Bits per token on held-out, training and other-policy windows, and the sample-entropy estimates."""
    metrics: dict[str, Any] = {"uniform_bits_per_token": math.log2(net.config.codebook_size)}
    name = "bound" if isinstance(net, VQDiffusion) else "nll"
    for split, windows in (("test", held), ("train", train_data), ("compare", compare)):
        if windows is None:
            continue
        w = windows.get_batch(_evenly(len(windows), cfg.eval_windows))
        metrics[f"{split}/{name}_bits_per_token"] = float(bits_per_token(net, w, cfg.eval_stride, amp=amp).mean())
        metrics[f"{split}/windows"] = len(w)
        if split != "train":
            entropy = sample_entropy_bits_per_token(net, w, cfg.eval_stride, amp=amp)
            metrics[f"{split}/sample_entropy_bits_per_token"] = float(entropy.mean())
    if compare is not None:
        metrics["compare_policy"] = cfg.compare_policy
    return metrics


def _grid(net: VideoModelArtefact, codec: Any, cfg: VideoTrainConfig, episodes: EpisodeDataset,
          tokens: list[np.ndarray], k: int, skip: int) -> np.ndarray:
    """samples.png: windows from the middle of evenly chosen episodes (different tasks first)."""
    order = sorted(range(len(episodes)), key=lambda i: (sum(1 for j in range(i) if episodes.entries[j]["task"]
                                                            == episodes.entries[i]["task"]), i))
    rows_frames, rows_tokens = [], []
    for i in order[:cfg.grid_rows]:
        frames = episodes[i].frames
        end = max(k * skip, len(frames) // 2)
        pos = [max(0, end - (k - j) * skip) for j in range(k + 1)]
        rows_frames.append(frames[pos])
        rows_tokens.append(torch.from_numpy(tokens[i][pos].astype(np.int64)))
    windows = torch.stack(rows_tokens)
    if net.config.sticky_codes:  # the rows' frames are the windows: compare each with the one before
        same = np.stack([unchanged_cells(f, net.config.grid, 1) for f in rows_frames])
        windows = keep_unchanged_codes(windows, torch.from_numpy(same))
    return sample_grid(net, codec, np.stack(rows_frames), windows, samples=cfg.grid_samples,
                       stride=cfg.eval_stride)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The headline numbers of a run, one line."""
    name = "bound" if metrics.get("model") == "vqdiffusion" else "nll"
    parts = [f"uniform {metrics['uniform_bits_per_token']:.2f}"]
    for split in ("test", "train", "compare"):
        key = f"{split}/{name}_bits_per_token"
        if key in metrics:
            label = metrics.get("compare_policy", "compare") if split == "compare" else split
            parts.append(f"{label} {metrics[key]:.3f}")
    text = f"{name} in bits/token: " + ", ".join(parts)
    if "test/sample_entropy_bits_per_token" in metrics:
        text += f"; sample entropy held-out {metrics['test/sample_entropy_bits_per_token']:.3f}"
        if "compare/sample_entropy_bits_per_token" in metrics:
            text += f" vs {metrics.get('compare_policy')} {metrics['compare/sample_entropy_bits_per_token']:.3f}"
    if "wall_time_s" in metrics:
        text += f"; {metrics['steps']} steps, {metrics['wall_time_s']:.0f}s in all"
    return text
