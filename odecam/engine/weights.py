"""Choosing the weights a command runs: an explicit checkpoint, else the best one installed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from odecam.assets import DEFAULT_WEIGHTS
from odecam.checkpoint import load_checkpoint, read_checkpoint
from odecam.config import preset as make_preset
from odecam.model import MotionTransferModel

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: MotionTransferModel
    description: str  # one line saying which weights these are
    trained: bool


def load_model(checkpoint: str | Path | None = None, preset: str | None = None, num_refs: int | None = None,
               device: str = "cpu", paste_back: bool = False) -> LoadedModel:
    """The model for a command.

    * ``checkpoint`` given: those weights.
    * else the trained default shipped in the package (``odecam/assets/default.safetensors``) when its
      preset matches ``preset`` (or no preset was asked for);
    * else an untrained ``preset`` (default ``lite``), and the description says so.

    ``paste_back`` (``--paste-back``): the motion field fades to zero at the square's edges
    over :data:`odecam.engine.paste_back.EDGE_ANCHOR` of the side (``generator.edge_anchor``; a checkpoint's own
    wider anchor is kept), so the square blends into its photo (:func:`odecam.engine.paste_back.anchored`).
    """
    if checkpoint is not None:
        model = load_checkpoint(checkpoint, device=device)
        desc = f"checkpoint {checkpoint} ({model.cfg.name})"
        trained = True
    elif DEFAULT_WEIGHTS.exists() and (preset is None or read_checkpoint(DEFAULT_WEIGHTS)[0].name == preset):
        model = load_checkpoint(DEFAULT_WEIGHTS, device=device)
        _, _, meta = read_checkpoint(DEFAULT_WEIGHTS)
        # one short line; the training history (hundreds of characters) is the model card's and -v's
        desc = (f"trained default {model.cfg.name} at {model.cfg.image_size} px ({DEFAULT_WEIGHTS.name}; its data and "
                "training: the README's model card)")
        log.debug("default weights trained on: %s", meta.get("trained_on", "(not recorded)"))
        trained = True
    else:
        name = preset or "lite"
        torch.manual_seed(0)
        model = MotionTransferModel(make_preset(name)).to(device).eval()
        desc = f"UNTRAINED {name} (random weights: no trained {name} checkpoint is installed; pass --checkpoint)"
        trained = False
    if num_refs is not None:
        model.cfg.num_refs = num_refs
    if paste_back:
        from odecam.engine.paste_back import anchored

        model = anchored(model)
    return LoadedModel(model, desc, trained)
