"""Neural networks, and the base class that saves and loads them as artefact directories.

A model that subclasses :class:`PretrainedModel` is built from one frozen config dataclass
(``config_class``) and saves as ``config.json`` + ``model.safetensors`` with
:meth:`~PretrainedModel.save_pretrained`; :meth:`~PretrainedModel.from_pretrained` rebuilds it
from that directory alone, with no training code or config objects of the run that made it.
The codec and the video models are such models; reward models (not modules themselves) write
the same directory format with the same header (:func:`diffusion_reward.utils.checkpoint.artefact_header`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from diffusion_reward.config import from_dict, to_dict
from diffusion_reward.utils.checkpoint import (WEIGHTS_NAME, ArtefactError, artefact_header, load_tensors,
                                               read_artefact_config, save_artefact)
from diffusion_reward.utils.device import resolve_device

M = TypeVar("M", bound="PretrainedModel")


class PretrainedModel(nn.Module):
    """An ``nn.Module`` with a config dataclass that round-trips through an artefact directory.

    Subclasses set ``config_class`` and ``kind`` and take the config as the only argument of
    ``__init__``. ``config.json`` holds the artefact header (``kind``, ``format_version``,
    ``package_version``), ``config``, ``extra`` (free-form JSON: training metrics, dataset names;
    ``model.extra`` after loading) and whatever :meth:`artefact_fields` adds.
    """

    config_class: ClassVar[type]
    kind: ClassVar[str]
    what: ClassVar[str] = "model"  # how messages name it ("codec", "video model")

    def __init__(self, config: Any):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.extra: dict[str, Any] = {}

    def artefact_fields(self) -> dict[str, Any]:
        """Fields a subclass keeps in ``config.json`` beside the config (restored by :meth:`restore_fields`)."""
        return {}

    def restore_fields(self, meta: dict[str, Any]) -> None:
        """Take back what :meth:`artefact_fields` saved."""

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None,
                        state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (every parameter and persistent buffer, or
        ``state_dict`` instead, for example EMA weights)."""
        meta = {**artefact_header(self.kind), "config": to_dict(self.config), "extra": extra or {},
                **self.artefact_fields()}
        return save_artefact(directory, meta, dict(state_dict if state_dict is not None else self.state_dict()))

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: str | torch.device = "cpu") -> M:
        """Rebuild the model saved in ``directory``, in eval mode on ``device`` (``auto|cpu|cuda``).

        Weights load strictly: a missing, unexpected or mis-shaped tensor is an error naming it.
        """
        meta = cls.read_config(directory)
        return cls._build(directory, meta, device)

    @classmethod
    def read_config(cls, directory: str | os.PathLike) -> dict[str, Any]:
        """``config.json`` of a directory that must hold this kind of model (see :func:`read_artefact_config`)."""
        return read_artefact_config(directory, cls.what, cls.kind)

    @classmethod
    def _build(cls: type[M], directory: str | os.PathLike, meta: dict[str, Any], device: str | torch.device) -> M:
        directory = Path(directory)
        try:
            config = from_dict(cls.config_class, meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtefactError(f"{directory}/config.json: bad {cls.what} config ({exc})") from None
        try:
            tensors = load_tensors(directory / WEIGHTS_NAME)
        except (FileNotFoundError, ValueError) as exc:
            raise ArtefactError(str(exc)) from None
        model = cls(config)
        model.extra = meta.get("extra", {})
        model.restore_fields(meta)
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise ArtefactError(f"{directory}: weights do not match the config: {exc}") from None
        return model.to(resolve_device(str(device)) if not isinstance(device, torch.device) else device).eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["PretrainedModel", "ArtefactError"]
