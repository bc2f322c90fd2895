"""Checkpoints: safetensors weights plus a JSON config, and First Order Motion Model import.

A checkpoint ``NAME.safetensors`` carries its config in the safetensors metadata (key ``odecam_config``)
and a copy beside it as ``NAME.json``, so a single file is enough to load and the config is readable.
Loading checks every key and shape before touching the model: a checkpoint of another architecture is
refused with the mismatched keys named, and nothing is half-loaded.

FOMM checkpoints (``vox-cpk.pth.tar``, ``vox-adv-cpk.pth.tar``) are pickles; they are read with
``torch.load(weights_only=True)``, which refuses a pickle that carries code.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import torch

from odecam.config import ModelConfig, preset
from odecam.errors import CheckpointError
from odecam.model import MotionTransferModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_META_CONFIG = "odecam_config"
_META_VERSION = "odecam_format"


def save_checkpoint(model: MotionTransferModel, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` config. Returns the weights path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {_META_CONFIG: model.cfg.to_json(), _META_VERSION: str(FORMAT_VERSION)} | (extra or {})
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    path.with_suffix(".json").write_text(model.cfg.to_json() + "\n")
    return path


def read_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, str]]:
    """Read config, tensors and metadata from a .safetensors checkpoint (config from metadata, else .json)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the path.")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a valid safetensors file ({exc}); "
                              "re-save it with odecam or convert it with 'odecam convert-fomm'.") from None
    text = meta.get(_META_CONFIG)
    if text is None and path.with_suffix(".json").exists():
        text = path.with_suffix(".json").read_text()
    if text is None:
        raise CheckpointError(f"checkpoint {str(path)!r} has no config (metadata or .json beside it); "
                              "save it with odecam.checkpoint.save_checkpoint.")
    try:
        cfg = ModelConfig.from_json(text)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} has an invalid config: {exc}.") from None
    return cfg, tensors, meta


def check_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and mis-shaped keys, if any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(k for k in set(expected) & set(tensors) if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or shapes:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {few(unexpected)}")
        if shapes:
            detail = [f"{k} {tuple(tensors[k].shape)} vs {tuple(expected[k].shape)}" for k in shapes]
            parts.append(f"{len(shapes)} with other shapes: {few(detail)}")
        raise CheckpointError(f"{source} does not match this architecture ({'; '.join(parts)}); "
                              "load it with the config it was saved with.")


def load_checkpoint(path: str | Path, cfg: ModelConfig | None = None, device: str | torch.device = "cpu",
                    ) -> MotionTransferModel:
    """Build the model a checkpoint describes (or ``cfg``) and load its weights, all or nothing."""
    saved_cfg, tensors, _ = read_checkpoint(path)
    model = MotionTransferModel(cfg or saved_cfg)
    check_state_dict(model, tensors, f"checkpoint {str(path)!r}")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()


def _torch_load_safely(path: Path) -> dict:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise CheckpointError(f"{str(path)!r} holds more than tensors (refused by torch.load(weights_only=True): "
                              f"{first[:200]}); only load checkpoints from sources you trust, as plain weights.") from None
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the path.") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable PyTorch checkpoint ({type(exc).__name__}); "
                              "pass FOMM's vox-cpk.pth.tar or vox-adv-cpk.pth.tar.") from None


def fomm_state_dict(raw: dict, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Flatten FOMM's {'kp_detector': sd, 'generator': sd, ...} into 'kp_detector.*', 'generator.*' keys."""
    if not isinstance(raw, dict) or "kp_detector" not in raw or "generator" not in raw:
        keys = sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{source} has no 'kp_detector' and 'generator' entries (found {keys}); "
                              "pass a First Order Motion Model checkpoint such as vox-cpk.pth.tar.")
    out: dict[str, torch.Tensor] = {}
    for part in ("kp_detector", "generator"):
        sd = raw[part]
        if not isinstance(sd, dict):
            raise CheckpointError(f"{source}: entry {part!r} is not a state dict.")
        for k, v in sd.items():
            k = k[len("module."):] if k.startswith("module.") else k
            if not isinstance(v, torch.Tensor):
                raise CheckpointError(f"{source}: {part}.{k} is not a tensor.")
            out[f"{part}.{k}"] = v
    return out


def convert_fomm(src: str | Path, dst: str | Path, cfg: ModelConfig | None = None) -> tuple[Path, list[str]]:
    """Import a FOMM vox-256 checkpoint into the ``vox256`` preset and save it as safetensors.

    FOMM's keys must match exactly (no missing, no unexpected, same shapes); the paper's new parts
    (F_E, F_A, fusion confidences) keep their identity initialisation. Returns (path, new keys).
    """
    src = Path(src)
    fomm = fomm_state_dict(_torch_load_safely(src), f"checkpoint {str(src)!r}")
    model = MotionTransferModel(cfg or preset("vox256"))
    ours = model.state_dict()
    unexpected = sorted(set(fomm) - set(ours))
    new_keys = sorted(set(ours) - set(fomm))
    merged = {k: (fomm[k] if k in fomm else v) for k, v in ours.items()}
    check_state_dict(model, {**merged, **{k: fomm[k] for k in unexpected}}, f"checkpoint {str(src)!r}")
    fomm_modules = ("generator.dense_motion_network.hourglass", "generator.first", "generator.down_blocks",
                    "generator.up_blocks", "generator.bottleneck", "generator.final", "kp_detector.")
    missing = [k for k in new_keys if k.startswith(fomm_modules) or k in (
        "generator.dense_motion_network.mask.weight", "generator.dense_motion_network.mask.bias")]
    if missing:
        raise CheckpointError(f"checkpoint {str(src)!r} lacks FOMM keys: {', '.join(missing[:5])}; "
                              "it is not a complete vox-256 checkpoint.")
    model.load_state_dict(merged, strict=True)
    log.info("imported %d FOMM tensors; %d new tensors start at identity", len(fomm), len(new_keys))
    path = save_checkpoint(model, dst, extra={"converted_from": src.name})
    return path, new_keys
