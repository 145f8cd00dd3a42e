"""Where a result came from: the machine's tag in result file names, and directory fingerprints."""

from __future__ import annotations

import re

from diffusion_reward.utils.provenance import directory_fingerprint, machine_tag


def test_machine_tag_is_a_file_name_part():
    assert re.fullmatch(r"[a-z0-9_]+-[a-z0-9_]+-\d+cores(-[a-z0-9-]+)?", machine_tag())


def test_fingerprint_follows_the_files_but_not_an_interrupted_write(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    before = directory_fingerprint(tmp_path)
    (tmp_path / ".model.safetensors.a1b2.tmp").write_bytes(b"half of new weights")  # a kill's leftover
    assert directory_fingerprint(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert directory_fingerprint(tmp_path) != before
