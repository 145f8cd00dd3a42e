"""Metric CSV files: columns that grow, rows dropped after a resumed step, and no half-written file."""

from __future__ import annotations

import csv
import os

import pytest

from diffusion_reward.utils.logging import CSVWriter, drop_rows_after


def read(path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_new_columns_widen_the_file_and_keep_old_rows(tmp_path):
    writer = CSVWriter(tmp_path)
    writer.write("train", 1, {"loss": 2.0})
    writer.write("train", 2, {"loss": 1.0, "lr": 0.1})
    assert read(tmp_path / "train.csv") == [{"step": "1", "loss": "2.0", "lr": ""},
                                            {"step": "2", "loss": "1.0", "lr": "0.1"}]


def test_a_failed_widening_leaves_the_old_file_whole(tmp_path, monkeypatch):
    writer = CSVWriter(tmp_path)
    writer.write("train", 1, {"loss": 2.0})
    before = (tmp_path / "train.csv").read_bytes()

    def killed(self, rows):
        raise KeyboardInterrupt  # stands for a kill while the file is rewritten

    monkeypatch.setattr(csv.DictWriter, "writerows", killed)
    with pytest.raises(KeyboardInterrupt):
        CSVWriter(tmp_path).write("train", 2, {"loss": 1.0, "lr": 0.1})
    assert (tmp_path / "train.csv").read_bytes() == before
    assert os.listdir(tmp_path) == ["train.csv"]


def test_drop_rows_after_a_step(tmp_path):
    writer = CSVWriter(tmp_path)
    for step in (10, 20, 30):
        writer.write("train", step, {"loss": step / 10})
        writer.write("final", step, {"psnr": 20.0})
    drop_rows_after(tmp_path, 20, namespaces=["train"])
    assert [r["step"] for r in read(tmp_path / "train.csv")] == ["10", "20"]
    assert [r["step"] for r in read(tmp_path / "final.csv")] == ["10", "20", "30"]
    drop_rows_after(tmp_path, 15)
    assert [r["step"] for r in read(tmp_path / "final.csv")] == ["10"]
    assert list(read(tmp_path / "train.csv")[0]) == ["step", "loss"]
