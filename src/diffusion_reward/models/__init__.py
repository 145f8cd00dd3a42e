"""Neural networks, and the base class that saves and loads them as artefact directories.

A model that subclasses :class:`PretrainedModel` is built from one frozen config dataclass
(``config_class``) and saves as ``config.json`` + ``model.safetensors`` with
:meth:`~PretrainedModel.save_pretrained`; :meth:`~PretrainedModel.from_pretrained` rebuilds it
from that directory alone, with no training code or config objects of the run that made it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from diffusion_reward.config import from_dict, to_dict
from diffusion_reward.errors import UserError
from diffusion_reward.utils.checkpoint import load_artefact, save_artefact
from diffusion_reward.utils.device import resolve_device

M = TypeVar("M", bound="PretrainedModel")

ARTEFACT_FORMAT_VERSION = 1


class ArtefactError(UserError, ValueError):
    """A model directory cannot be loaded (wrong kind of model, missing or mismatched weights)."""


class PretrainedModel(nn.Module):
    """An ``nn.Module`` with a config dataclass that round-trips through an artefact directory.

    Subclasses set ``config_class`` and ``model_type`` and take the config as the only argument
    of ``__init__``. ``config.json`` holds ``{"model_type", "format_version", "config", "extra"}``;
    ``extra`` is free-form JSON (training metrics, dataset names), available as ``model.extra``
    after loading.
    """

    config_class: ClassVar[type]
    model_type: ClassVar[str]

    def __init__(self, config: Any):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.extra: dict[str, Any] = {}

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (every parameter and persistent buffer)."""
        meta = {"model_type": self.model_type, "format_version": ARTEFACT_FORMAT_VERSION,
                "config": to_dict(self.config), "extra": extra or {}}
        return save_artefact(directory, meta, self.state_dict())

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: str | torch.device = "cpu") -> M:
        """Rebuild the model saved in ``directory``, in eval mode on ``device`` (``auto|cpu|cuda``).

        Weights load strictly: a missing, unexpected or mis-shaped tensor is an error naming it.
        """
        try:
            meta, tensors = load_artefact(directory)
        except (FileNotFoundError, ValueError) as exc:
            raise ArtefactError(str(exc)) from None
        kind = meta.get("model_type")
        if kind != cls.model_type:
            raise ArtefactError(f"{directory}: holds a {kind!r} model, expected {cls.model_type!r}")
        if meta.get("format_version", 0) > ARTEFACT_FORMAT_VERSION:
            raise ArtefactError(f"{directory}: artefact format {meta['format_version']} is newer than this "
                                "package reads; upgrade diffusion-reward")
        try:
            config = from_dict(cls.config_class, meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtefactError(f"{directory}/config.json: bad model config ({exc})") from None
        model = cls(config)
        model.extra = meta.get("extra", {})
        try:
            model.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise ArtefactError(f"{directory}: weights do not match the config: {exc}") from None
        return model.to(resolve_device(str(device)) if not isinstance(device, torch.device) else device).eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
