"""The shared trainer: exact resume after a kill, checkpoints, run directory, NaN stop, EMA export."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffusion_reward.errors import UserError
from diffusion_reward.train.trainer import (OptimizerSpec, StepSampler, Trainer, TrainingDiverged, checkpoint_dirs)
from diffusion_reward.utils.checkpoint import load_tensors

sys.path.insert(0, str(Path(__file__).parent))
from trainer_toy import ToyData, ToyNet, ToyTask, toy_config, train_toy  # noqa: E402

HERE = Path(__file__).parent


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {}
    for name, module in trainer.task.modules.items():
        out.update({f"{name}.{k}": v.clone() for k, v in module.state_dict().items()})
    with trainer.ema_weights():
        out.update({f"ema.{k}": v.clone() for k, v in trainer.raw("model").state_dict().items()})
    return out


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path) -> None:
    full = train_toy(tmp_path / "full")
    # the same run in another process, killed (SIGKILL) in the middle of step 7
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(HERE / "trainer_toy.py"), "kill", str(tmp_path / "killed"), "7"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [p.name for p in checkpoint_dirs(tmp_path / "killed")] == ["step-00000003", "step-00000006"]
    resumed = train_toy(tmp_path / "killed", resume=True)
    assert resumed.step == 10
    _assert_same(_state(full), _state(resumed))
    for name in ("model", "critic"):  # optimiser state too
        sa, sb = full._optimizers[name].state_dict()["state"], resumed._optimizers[name].state_dict()["state"]
        for i in sa:
            for key in sa[i]:
                assert torch.equal(torch.as_tensor(sa[i][key]), torch.as_tensor(sb[i][key]))


def test_a_resumed_run_logs_every_step_once(tmp_path) -> None:
    """A run killed after its last checkpoint had logged steps past it: the resumed run logs them again, in place
    of the killed run's rows, so its metric files equal an uninterrupted run's; final scores too."""
    import shutil

    def rows(run):
        return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in csv.DictReader((run / "train.csv").open())]

    full = train_toy(tmp_path / "full", steps=5, log_every=1)
    train_toy(tmp_path / "killed", steps=5, log_every=1)
    shutil.rmtree(tmp_path / "killed" / "checkpoints" / "step-00000005")  # as if killed before writing it
    resumed = train_toy(tmp_path / "killed", steps=5, log_every=1, resume=True)
    assert [int(r["step"]) for r in rows(tmp_path / "killed")] == [1, 2, 3, 4, 5]
    assert rows(tmp_path / "killed") == rows(tmp_path / "full")
    train_toy(tmp_path / "early", steps=5, log_every=1)
    shutil.rmtree(tmp_path / "early" / "checkpoints")  # killed before its first checkpoint: starts again
    train_toy(tmp_path / "early", steps=5, log_every=1, resume=True)
    assert rows(tmp_path / "early") == rows(tmp_path / "full")
    for trainer in (full, resumed, resumed):  # logged twice at the last step: one row
        trainer.log_final({"test/mse": 0.5})
    final = [list(csv.DictReader((tmp_path / name / "final.csv").open())) for name in ("full", "killed")]
    assert final[0] == final[1] == [{"step": "5", "test_mse": "0.5"}]


def test_run_directory_contents_and_checkpoint_pruning(tmp_path) -> None:
    trainer = train_toy(tmp_path / "run", eval_every=4)
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["trainer"]["steps"] == 10 and config["task"] == {"width": 16}
    # keep_checkpoints=2: steps 3, 6, 9 and the final 10 were written, the last two kept
    assert [p.name for p in checkpoint_dirs(run)] == ["step-00000009", "step-00000010"]
    assert not list((run / "checkpoints").glob(".*"))  # no temporary directories left behind
    ckpt = run / "checkpoints" / "step-00000010"
    assert json.loads((ckpt / "trainer.json").read_text())["step"] == 10
    torch.load(ckpt / "optimizers.pt", weights_only=True)  # plain tensors, no pickled objects
    assert any(k.startswith("ema/") for k in load_tensors(ckpt / "state.safetensors"))
    rows = list(csv.DictReader((run / "train.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10]
    assert {"loss", "critic", "samples_per_s", "lr_model", "grad_norm_model"} <= set(rows[0])
    assert float(rows[0]["lr_model"]) == pytest.approx(0.05 * 2 / 3)  # linear warm-up over 3 steps
    assert float(rows[-1]["lr_model"]) == pytest.approx(0.05)
    evals = list(csv.DictReader((run / "eval.csv").open()))
    assert [int(r["step"]) for r in evals] == [4, 8]
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]


def test_existing_run_needs_resume_and_the_same_task(tmp_path) -> None:
    train_toy(tmp_path / "run", steps=3)
    with pytest.raises(UserError, match="--resume"):
        train_toy(tmp_path / "run", steps=3)
    with pytest.raises(UserError, match="task configuration changed: width"):
        train_toy(tmp_path / "run", task={"width": 8}, steps=6, resume=True)
    # resuming a finished run with more steps continues it
    assert train_toy(tmp_path / "run", steps=5, resume=True).step == 5
    # --resume without a checkpoint starts from scratch
    assert train_toy(tmp_path / "fresh", steps=2, resume=True).step == 2


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path) -> None:
    with pytest.raises(TrainingDiverged, match=r"step 4: the 'model' loss is nan.*step-00000003"):
        train_toy(tmp_path / "run", task={"nan_at": 4})
    assert [p.name for p in checkpoint_dirs(tmp_path / "run")] == ["step-00000003"]
    state = load_tensors(tmp_path / "run" / "checkpoints" / "step-00000003" / "state.safetensors")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_export_writes_the_ema_weights(tmp_path) -> None:
    trainer = train_toy(tmp_path / "run", steps=6)
    out = trainer.export(tmp_path / "model", extra={"note": "toy"})
    loaded = ToyNet.from_pretrained(out)
    assert loaded.extra == {"note": "toy"}
    with trainer.ema_weights():
        ema = {k: v.clone() for k, v in trainer.raw("model").state_dict().items()}
    raw = trainer.raw("model").state_dict()
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # the average differs from the last weights
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ema[k])


def test_step_sampler_is_a_pure_function_of_the_step() -> None:
    s = StepSampler(size=10, batch_size=4, seed=1)
    first = [s.indices(i) for i in range(5)]  # 20 samples: exactly two epochs
    again = StepSampler(size=10, batch_size=4, seed=1)
    assert all(torch.equal(again.indices(i), first[i]) for i in reversed(range(5)))
    flat = torch.cat(first)
    assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:].tolist()) == list(range(10))
    assert not torch.equal(flat[:10], flat[10:])  # a new permutation per epoch


def test_optimizer_spec_warmup_and_bad_setups(tmp_path) -> None:
    spec = OptimizerSpec("m", ("model",), lr=1.0, warmup_steps=4)
    assert [spec.lr_at(i) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = OptimizerSpec("m", ("model",), lr=1.0, warmup_steps=2, decay_steps=6, final_lr_fraction=0.1)
    lrs = [cosine.lr_at(i) for i in range(8)]
    assert lrs[:3] == [0.5, 1.0, 1.0] and lrs[4] == pytest.approx(0.55) and lrs[6:] == [pytest.approx(0.1)] * 2
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    with pytest.raises(UserError, match="empty"):
        Trainer(ToyTask(), [], toy_config(tmp_path / "x"))
    with pytest.raises(UserError, match="run directory"):
        Trainer(ToyTask(), ToyData(), toy_config(""))
