"""The shared training loop: devices, bf16, DDP, run directory, checkpoints, resume, EMA.

Every model in the project trains through :class:`Trainer`; what is specific to a model lives
in a :class:`TrainTask`. The trainer owns everything else:

* **devices**: ``auto|cpu|cuda``, optional bf16 autocast (``trainer.autocast()``), optional
  channels-last memory format and ``torch.compile``; nothing assumes CUDA;
* **processes**: run the same script under ``torchrun --nproc-per-node N``; the trainer joins
  the process group (``gloo`` on CPU, ``nccl`` on GPUs), wraps the trained modules in
  DistributedDataParallel and gives each process its slice of every global batch;
* **data**: a map-style dataset (``len(data)``, and ``data.get_batch(indices)`` or
  ``data[i]`` + default collation); sample order is a pure function of (seed, step), so a
  resumed run and a run on N processes see exactly the batches of an uninterrupted run;
* **optimisers**: any number (a GAN has a generator and a discriminator), each with its own
  learning rate, linear warm-up, weight decay and gradient clipping (:class:`OptimizerSpec`);
  optional EMA of the weights of the ``"model"`` module;
* **run directory**: the resolved config (``config.json``), CSV metrics + TensorBoard
  (``train/…``, ``eval/…``), a progress bar with loss and throughput, checkpoints;
* **checkpoints**: ``checkpoints/step-NNNNNNNN/`` (safetensors + JSON + an optimiser file that
  loads with ``weights_only=True``), written to a temporary directory and renamed into place,
  the last ``keep_checkpoints`` kept. ``resume=True`` continues from the newest one with the
  same weights, optimiser state, step and RNG state: the result equals an uninterrupted run;
* **failure**: a NaN/inf loss stops the run (:class:`TrainingDiverged`, a one-line error that
  names the step and the last good checkpoint) before the bad gradient touches the weights.

Writing a task (a condensed version of the VQ-Diffusion recipe)::

    class DiffusionTask(TrainTask):
        def __init__(self, model, cfg):
            self.modules = {"model": model}          # "model" is the one exported and EMA'd
            self.cfg = cfg

        def optimizers(self):
            return [OptimizerSpec("model", ("model",), kind="adamw", lr=4.5e-4, betas=(0.9, 0.96),
                                  weight_decay=0.045, warmup_steps=5000, grad_clip=0.5)]

        def training_step(self, trainer, batch):
            with trainer.autocast():
                loss = trainer.module("model")(batch["cond"], batch["target"])
            trainer.optimize("model", loss)            # zero_grad, backward, clip, warm-up lr, step, EMA
            return {"loss": loss}

        def evaluate(self, trainer):                   # optional; rank 0, modules in eval mode
            return {"val_loss": ...}

        def config_dict(self):                         # saved in the run's config.json
            return {"model": to_dict(self.model.config), "train": to_dict(self.cfg)}

    trainer = Trainer(DiffusionTask(model, cfg), data, TrainerConfig(run_dir="runs/vqd", steps=50_000,
                                                                        batch_size=64, ema_decay=0.99))
    trainer.fit()
    trainer.export("runs/vqd/model")                   # model.save_pretrained with the EMA weights

Inside ``training_step``: ``trainer.step`` (index of the step being taken, from 0),
``trainer.device``, ``trainer.module(name)`` (the DDP/compiled wrapper: call it for the
forward pass), ``trainer.raw(name)`` (the plain module: attributes, extra forwards that must
not synchronise), ``trainer.autocast()``, ``trainer.optimize(name, loss)``, ``trainer.rank`` /
``trainer.world_size``. Batches arrive on the device; ``batch_size`` is the global batch.
Build the task's modules after seeding (``seed_everything(config.seed)``) for reproducible
initial weights; under DDP rank 0's initial weights are broadcast to every process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import default_collate

from diffusion_reward.config import option, to_dict
from diffusion_reward.errors import UserError
from diffusion_reward.utils.checkpoint import atomic_write_json, load_tensors, read_json, save_tensors
from diffusion_reward.utils.device import autocast, resolve_device, use_bf16
from diffusion_reward.utils.logging import MetricsWriter, drop_rows_after, get_logger
from diffusion_reward.utils.rundir import Checkpoints, config_changes, refuse_existing_run
from diffusion_reward.utils.seeding import rng_state, seed_everything, set_rng_state

CHECKPOINT_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Options of the training loop shared by every model."""

    run_dir: str = option("", "run directory: resolved config, metrics, TensorBoard, checkpoints "
                              "(default: chosen by the command, e.g. runs/codec-<preset>)")
    steps: int = option(1000, "optimisation steps to train for (counting from step 0 of the run)")
    batch_size: int = option(32, "global batch size, split evenly over DDP processes")
    seed: int = option(0, "random seed (weights, data order, every random draw)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where to train: auto picks CUDA when present")
    bf16: bool | None = option(None, "bf16 autocast for the forward pass (weights and optimiser stay float32); "
                                     "default: on where bf16 matrix products beat float32 (GPUs with bf16; CPUs with AMX or AVX512-BF16), measured at start")
    compile: bool = option(False, "torch.compile the trained modules (slow start, faster steps on big runs)")
    channels_last: bool = option(False, "keep modules and 4-D batches in channels-last memory format (faster "
                                        "convolutions on CPUs, most of all with bf16)")
    threads: int = option(0, "CPU threads per process (0: PyTorch's default)")
    log_every: int = option(25, "write averaged training metrics every this many steps")
    eval_every: int = option(0, "run the task's evaluation every this many steps (0: only at the end)")
    checkpoint_every: int = option(500, "write a checkpoint every this many steps (and at the end)")
    keep_checkpoints: int = option(2, "how many of the newest checkpoints to keep")
    resume: bool = option(False, "continue from the newest checkpoint in the run directory")
    ema_decay: float = option(0.0, "keep an exponential moving average of the model weights with this decay "
                                   "(0: off); evaluation and the exported model use the average")
    tensorboard: bool = option(True, "also write TensorBoard event files")
    progress: bool = option(True, "show a progress bar")


def resolve_precision(config: TrainerConfig) -> TrainerConfig:
    """``config`` with ``bf16`` decided (``None`` = auto: :func:`~diffusion_reward.utils.device.use_bf16`)."""
    if config.bf16 is not None:
        return config
    device = "cuda" if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()) else "cpu"
    return dataclasses.replace(config, bf16=use_bf16(None, device))


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One optimiser: which modules it updates and how.

    ``kind`` is ``adam`` or ``adamw``; the learning rate warms up linearly from ``lr /
    warmup_steps`` to ``lr`` over the first ``warmup_steps`` updates of this optimiser, then
    stays constant, or with ``decay_steps`` > 0 follows a half cosine from ``lr`` down to
    ``final_lr_fraction * lr`` at update ``decay_steps`` (and stays there). ``grad_clip`` > 0
    clips the global gradient norm. With ``weight_decay``, biases and normalisation scales
    (1-D parameters) are not decayed. The rate is a pure function of the update count, so a
    resumed run follows the same schedule.
    """

    name: str
    modules: tuple[str, ...]
    lr: float
    kind: Literal["adam", "adamw"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 0.0
    decay_steps: int = 0
    final_lr_fraction: float = 0.0

    def lr_at(self, updates: int) -> float:
        """The learning rate of this optimiser's update number ``updates`` (from 0)."""
        if self.warmup_steps > 0 and updates < self.warmup_steps:
            return self.lr * (updates + 1) / self.warmup_steps
        if self.decay_steps > 0:
            span = max(1, self.decay_steps - self.warmup_steps)
            progress = min(1.0, max(0, updates - self.warmup_steps) / span)
            scale = self.final_lr_fraction + (1 - self.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
            return self.lr * scale
        return self.lr


class TrainTask:
    """What a model brings to the trainer; subclass it (see the module docstring).

    ``modules``: the ``nn.Module``\\ s to train, checkpoint and (``"model"``) export.
    """

    modules: dict[str, nn.Module]

    def optimizers(self) -> list[OptimizerSpec]:
        raise NotImplementedError

    def training_step(self, trainer: "Trainer", batch: Any) -> Mapping[str, float | torch.Tensor]:
        raise NotImplementedError

    def evaluate(self, trainer: "Trainer") -> Mapping[str, float]:
        """Metrics logged as ``eval/<name>``; runs on rank 0 with every module in eval mode."""
        return {}

    def config_dict(self) -> dict[str, Any]:
        """The task's resolved configuration; a resumed run must have the same one."""
        return {}


class TrainingDiverged(UserError, RuntimeError):
    """The loss became NaN or infinite; the weights of the last good checkpoint are intact."""


# ----------------------------------------------------------------------------- helpers

def _world() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor in a (nested) batch to ``device`` (4-D float tensors channels-last if asked)."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


class StepSampler:
    """Global batch ``step`` -> dataset indices, from a fresh permutation per epoch seeded by (seed, epoch)."""

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.int64)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.size, generator=g)
        return self._perm

    def indices(self, step: int) -> torch.Tensor:
        out, pos, need = [], step * self.batch_size, self.batch_size
        while need:
            epoch, offset = divmod(pos, self.size)
            take = min(need, self.size - offset)
            out.append(self._permutation(epoch)[offset:offset + take])
            pos, need = pos + take, need - take
        return torch.cat(out)


def run_checkpoints(run_dir: str | os.PathLike) -> Checkpoints:
    """The trainer's checkpoints of a run directory (``checkpoints/step-<step>``)."""
    return Checkpoints(run_dir, "step", "trainer.json", digits=8, format_version=CHECKPOINT_FORMAT_VERSION)


def checkpoint_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints of a run, oldest first."""
    return run_checkpoints(run_dir).complete()


# ----------------------------------------------------------------------------- trainer

def check_run_dir(config: TrainerConfig) -> None:
    """Raise :class:`UserError` if ``config.run_dir`` holds checkpoints and ``resume`` is off.

    The trainer checks this itself; commands call it first too, so the error comes before slow
    preparation (loading data, tokenising) rather than after it.
    """
    if config.run_dir and not config.resume:
        refuse_existing_run(config.run_dir, bool(checkpoint_dirs(config.run_dir)), "checkpoints")


class Trainer:
    """Runs a :class:`TrainTask` on a dataset with a :class:`TrainerConfig` (see the module docstring)."""

    def __init__(self, task: TrainTask, data: Any, config: TrainerConfig):
        if not config.run_dir:
            raise UserError("TrainerConfig.run_dir is empty: give a run directory")
        if config.steps < 0 or config.batch_size < 1:
            raise UserError(f"steps must be >= 0 and batch_size >= 1, got {config.steps} and {config.batch_size}")
        if len(data) == 0:
            raise UserError("the training dataset is empty")
        self.task, self.data, self.config = task, data, resolve_precision(config)
        self.log = get_logger()
        self.run_dir = Path(config.run_dir)
        self.step = 0
        self.rank, self.world_size, self.local_rank = _world()
        self._own_group = False
        self._setup_done = False
        self.metrics_writer: MetricsWriter | None = None
        self.last_checkpoint: Path | None = None
        self.grad_norms: dict[str, float] = {}
        self._ema: list[torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    # -- public helpers for tasks ------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def module(self, name: str) -> nn.Module:
        """The module to call for a training forward pass (DDP- and/or compile-wrapped)."""
        return self._wrapped[name]

    def raw(self, name: str) -> nn.Module:
        """The plain module (its attributes, or forwards that must not trigger DDP hooks)."""
        return self.task.modules[name]

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the training device when ``config.bf16``, else a no-op."""
        return autocast(self.device, self.config.bf16)

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """One update of optimiser ``name``: check the loss, zero grads, backward, clip, warm-up lr, step, EMA."""
        spec, opt = self._specs[name], self._optimizers[name]
        self._check_finite(name, loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = self._params[name]
        if spec.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
            self.grad_norms[name] = float(norm)
        lr = spec.lr_at(self._updates[name])
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        self._updates[name] += 1
        if self._ema is not None and "model" in spec.modules:
            self._ema_update()

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Join the process group, place and wrap the modules, build the optimisers (once).

        :meth:`fit` calls it; call it yourself only to drive ``task.training_step`` by hand
        (benchmarks, notebooks), without a run directory.
        """
        if self._setup_done:
            return
        cfg = self.config
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if (cfg.device != "cpu" and torch.cuda.is_available()) else "gloo"
            dist.init_process_group(backend)
            self._own_group = True
        if self.distributed and cfg.batch_size % self.world_size:
            raise UserError(f"batch_size {cfg.batch_size} is not divisible by the {self.world_size} processes")
        device = resolve_device(cfg.device)
        if device.type == "cuda" and self.distributed:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)

        for m in self.task.modules.values():
            m.to(device)
            if cfg.channels_last:
                m.to(memory_format=torch.channels_last)
        self._specs = {s.name: s for s in self.task.optimizers()}
        self._optimizers, self._params, self._updates = {}, {}, {}
        for spec in self._specs.values():
            unknown = [m for m in spec.modules if m not in self.task.modules]
            if unknown:
                raise ValueError(f"optimizer {spec.name!r} names unknown module(s) {unknown}")
            named = [(f"{m}.{n}", p) for m in spec.modules for n, p in self.task.modules[m].named_parameters()
                     if p.requires_grad]
            self._params[spec.name] = [p for _, p in named]
            self._optimizers[spec.name] = self._make_optimizer(spec, named)
            self._updates[spec.name] = 0

        trained = {m for s in self._specs.values() for m in s.modules}
        self._wrapped: dict[str, nn.Module] = {}
        for name, module in self.task.modules.items():
            wrapped = module
            if self.distributed and name in trained:
                from torch.nn.parallel import DistributedDataParallel

                wrapped = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
            if cfg.compile:
                wrapped = torch.compile(wrapped)
            self._wrapped[name] = wrapped

        if cfg.ema_decay > 0:
            if "model" not in self.task.modules:
                raise ValueError("ema_decay needs a module named 'model'")
            self._ema = [t.detach().clone() for t in self._ema_targets()]
        self.sampler = StepSampler(len(self.data), cfg.batch_size, cfg.seed)
        self._setup_done = True

    @staticmethod
    def _make_optimizer(spec: OptimizerSpec, named: list[tuple[str, nn.Parameter]]) -> torch.optim.Optimizer:
        if spec.weight_decay > 0:
            decay = [p for _, p in named if p.ndim >= 2]
            rest = [p for _, p in named if p.ndim < 2]
            groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": spec.weight_decay},
                                            {"params": rest, "weight_decay": 0.0}]
        else:
            groups = [{"params": [p for _, p in named], "weight_decay": 0.0}]
        cls = torch.optim.AdamW if spec.kind == "adamw" else torch.optim.Adam
        if spec.kind not in ("adam", "adamw"):
            raise ValueError(f"optimizer kind must be adam or adamw, got {spec.kind!r}")
        # the fused kernel: one pass over all parameters instead of ~10 small ops per tensor (the
        # per-tensor loop took 15% of a small codec's CPU training step)
        params = [p for _, p in named]
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
        return cls(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, fused=fused)

    def _ema_targets(self) -> list[torch.Tensor]:
        model = self.task.modules["model"]
        return [p for p in model.parameters()] + [b for b in model.buffers() if b.is_floating_point()]

    @torch.no_grad()
    def _ema_update(self) -> None:
        assert self._ema is not None
        torch._foreach_lerp_(self._ema, [t.detach() for t in self._ema_targets()], 1.0 - self.config.ema_decay)

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Temporarily swap the EMA weights into ``raw("model")`` (a no-op without EMA)."""
        if self._ema is None:
            yield
            return
        targets = self._ema_targets()
        saved = [t.detach().clone() for t in targets]
        with torch.no_grad():
            for t, e in zip(targets, self._ema):
                t.copy_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for t, s in zip(targets, saved):
                    t.copy_(s)

    # -- run directory ----------------------------------------------------------------------
    def _resolved_config(self) -> dict[str, Any]:
        return {"trainer": to_dict(self.config), "task": self.task.config_dict(), "world_size": self.world_size}

    def _prepare_run_dir(self) -> Path | None:
        """Check resume/overwrite rules, write config.json; returns the checkpoint to resume from."""
        check_run_dir(self.config)
        existing = checkpoint_dirs(self.run_dir)
        resume_from = None
        if self.config.resume:
            if existing:
                resume_from = existing[-1]
                old = self.run_dir / "config.json"
                if old.exists():
                    stored = read_json(old).get("task", {})
                    now = json.loads(json.dumps(self.task.config_dict()))
                    diff = config_changes(stored, now)
                    if diff:
                        raise UserError(f"{old}: cannot resume, the task configuration changed: {', '.join(diff)}")
            elif self.is_main:
                self.log.info(f"{self.run_dir}: no checkpoint to resume from; starting a new run")
        self._barrier()  # every process has read the old config before rank 0 replaces it
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.run_dir / "config.json", self._resolved_config())
            run_checkpoints(self.run_dir).clear_partial()  # a checkpoint cut short by a kill
        return resume_from

    # -- checkpoints ----------------------------------------------------------------------
    def _barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-<step>`` atomically (all ranks call this); prune old ones."""
        checkpoints = run_checkpoints(self.run_dir)
        tmp = checkpoints.begin(self.step) if self.is_main else checkpoints.tmp_path(self.step)
        self._barrier()
        save_tensors(tmp / f"rng-rank{self.rank}.safetensors", rng_state())
        self._barrier()
        final = checkpoints.path(self.step)
        if self.is_main:
            tensors = {f"module/{name}/{k}": v for name, m in self.task.modules.items()
                       for k, v in m.state_dict().items()}
            if self._ema is not None:
                tensors.update({f"ema/{i}": t for i, t in enumerate(self._ema)})
            save_tensors(tmp / "state.safetensors", tensors)
            optim = {name: opt.state_dict() for name, opt in self._optimizers.items()}
            with open(tmp / "optimizers.pt", "wb") as f:
                torch.save(optim, f)
            checkpoints.write_marker(tmp, {
                "step": self.step, "updates": self._updates, "world_size": self.world_size,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "last_metrics": self.history[-1] if self.history else {}})
            checkpoints.commit(self.step)
            checkpoints.prune(self.config.keep_checkpoints)
        self._barrier()
        self.last_checkpoint = final
        return final

    def load_checkpoint(self, path: Path) -> None:
        meta = run_checkpoints(self.run_dir).read_marker(path)
        tensors = load_tensors(path / "state.safetensors")
        for name, module in self.task.modules.items():
            prefix = f"module/{name}/"
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise UserError(f"{path}: checkpoint does not fit module {name!r}: {exc}") from None
        if self._ema is not None:
            ema = [tensors.get(f"ema/{i}") for i in range(len(self._ema))]
            if any(e is None for e in ema):
                self.log.warning(f"{path}: checkpoint has no EMA weights; starting the average from the weights")
                self._ema = [t.detach().clone() for t in self._ema_targets()]
            else:
                self._ema = [e.to(self.device) for e in ema]  # type: ignore[union-attr]
        optim = torch.load(path / "optimizers.pt", map_location=self.device, weights_only=True)
        for name, opt in self._optimizers.items():
            if name not in optim:
                raise UserError(f"{path}: checkpoint has no state for optimizer {name!r}")
            opt.load_state_dict(optim[name])
        self.step = int(meta["step"])
        self._updates.update({k: int(v) for k, v in meta.get("updates", {}).items() if k in self._updates})
        rng_file = path / f"rng-rank{self.rank}.safetensors"
        if rng_file.exists():
            set_rng_state(load_tensors(rng_file))
        else:
            self.log.warning(f"{path}: no RNG state for rank {self.rank} (different process count); reseeding")
            seed_everything(self.config.seed + 7919 * self.rank + self.step)
        self.last_checkpoint = path

    # -- loop ------------------------------------------------------------------------------
    def _batch(self, step: int) -> Any:
        idx = self.sampler.indices(step)
        local = self.config.batch_size // self.world_size
        idx = idx[self.rank * local:(self.rank + 1) * local]
        get_batch: Callable[[torch.Tensor], Any] | None = getattr(self.data, "get_batch", None)
        batch = get_batch(idx) if get_batch is not None else default_collate([self.data[int(i)] for i in idx])
        return to_device(batch, self.device, self.config.channels_last)

    def _check_finite(self, name: str, loss: torch.Tensor) -> None:
        ok = torch.isfinite(loss.detach()).all().float()
        if self.distributed:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if not bool(ok):
            where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                     else "no checkpoint was written yet")
            raise TrainingDiverged(f"step {self.step}: the {name!r} loss is {float(loss.detach().float())}; training "
                                   f"stopped before updating the weights ({where}). Try a lower learning rate, "
                                   "gradient clipping, or --no-bf16")

    def _set_train(self, mode: bool) -> None:
        for m in self.task.modules.values():
            m.train(mode)

    def evaluate(self) -> dict[str, float]:
        """Run the task's evaluation on rank 0 (with EMA weights if enabled) and log ``eval/…``."""
        metrics: dict[str, float] = {}
        if self.is_main:
            self._set_train(False)
            with self.ema_weights(), torch.no_grad():
                metrics = {k: float(v) for k, v in self.task.evaluate(self).items()}
            self._set_train(True)
            if metrics and self.metrics_writer is not None:
                self.metrics_writer.log(self.step, {f"eval/{k}": v for k, v in metrics.items()})
        self._barrier()
        return metrics

    def _reduce_mean(self, sums: dict[str, float], count: int) -> dict[str, float]:
        keys = sorted(sums)
        values = torch.tensor([sums[k] / max(1, count) for k in keys], dtype=torch.float64)
        if self.distributed:
            dist.all_reduce(values)
            values /= self.world_size
        return dict(zip(keys, values.tolist()))

    def fit(self) -> dict[str, float]:
        """Train to ``config.steps`` (resuming if asked); returns the last averaged training metrics."""
        cfg = self.config
        try:
            self.setup()
            resume_from = self._prepare_run_dir()
            seed_everything(cfg.seed + 7919 * self.rank)
            if resume_from is not None:
                self.load_checkpoint(resume_from)
                if self.is_main:
                    self.log.info(f"resumed from {resume_from} at step {self.step}")
            if self.is_main:
                # what a killed attempt logged after the step this run starts from is logged again from here
                drop_rows_after(self.run_dir, self.step)
                self.metrics_writer = MetricsWriter(self.run_dir, tensorboard=cfg.tensorboard)
            self._loop()
            return self.history[-1] if self.history else {}
        finally:
            if self.metrics_writer is not None:
                self.metrics_writer.close()
                self.metrics_writer = None

    def _loop(self) -> None:
        cfg = self.config
        bar = None
        if self.is_main and cfg.progress and self.step < cfg.steps:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc=self.run_dir.name, unit="step", dynamic_ncols=True,
                       leave=False)
        sums: dict[str, float] = {}
        count, t0, wrote_at = 0, time.perf_counter(), self.step
        self._set_train(True)
        try:
            while self.step < cfg.steps:
                batch = self._batch(self.step)
                out = self.task.training_step(self, batch)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
                self.step += 1
                last = self.step == cfg.steps
                if self.step % cfg.log_every == 0 or last:
                    elapsed = time.perf_counter() - t0
                    metrics = self._reduce_mean(sums, count)
                    metrics["samples_per_s"] = count * cfg.batch_size / max(elapsed, 1e-9)
                    for name, opt in self._optimizers.items():
                        metrics[f"lr_{name}"] = opt.param_groups[0]["lr"]
                    metrics.update({f"grad_norm_{k}": v for k, v in self.grad_norms.items()})
                    self.history.append(metrics)
                    if self.metrics_writer is not None:
                        self.metrics_writer.log(self.step, {f"train/{k}": v for k, v in metrics.items()})
                    if bar is not None:
                        shown = {k: f"{metrics[k]:.4g}" for k in list(out)[:3]}
                        shown["img/s"] = f"{metrics['samples_per_s']:.0f}"
                        bar.set_postfix(shown, refresh=False)
                    sums, count, t0 = {}, 0, time.perf_counter()
                if bar is not None:
                    bar.update(1)
                if cfg.eval_every and self.step % cfg.eval_every == 0 and not last:
                    self.evaluate()
                if self.step % cfg.checkpoint_every == 0 or last:
                    self.save_checkpoint()
                    wrote_at = self.step
            if wrote_at != self.step:  # resumed at (or past) the final step: make sure a checkpoint exists
                self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()

    # -- results ----------------------------------------------------------------------------
    def log_final(self, metrics: Mapping[str, float]) -> None:
        """Log the run's final scores as ``final/<name>`` at its last step (rank 0), in place of those of an
        earlier attempt at that step (one killed after logging them resumes at that step and logs them again)."""
        if not self.is_main:
            return
        drop_rows_after(self.run_dir, self.step - 1, namespaces=["final"])
        writer = MetricsWriter(self.run_dir, tensorboard=self.config.tensorboard)
        try:
            writer.log(self.step, {f"final/{k.replace('/', '_')}": v for k, v in metrics.items()})
        finally:
            writer.close()

    def export(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Save ``raw("model")`` (with the EMA weights if enabled) via its ``save_pretrained`` (rank 0)."""
        directory = Path(directory)
        if self.is_main:
            model = self.task.modules["model"]
            with self.ema_weights():
                model.save_pretrained(directory, extra=extra)  # type: ignore[operator]
        self._barrier()
        return directory

    def close(self) -> None:
        """Leave the process group if this trainer joined it (``with Trainer(...) as t:`` does this)."""
        if self._own_group and dist.is_initialized():
            dist.destroy_process_group()
            self._own_group = False

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
