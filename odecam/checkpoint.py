"""Checkpoints: safetensors weights plus a JSON config, and First Order Motion Model import.

A checkpoint ``NAME.safetensors`` carries its config in the safetensors metadata (key ``odecam_config``)
and a copy beside it as ``NAME.json``, so a single file is enough to load and the config is readable.
Loading checks every key and shape before touching the model: a checkpoint of another architecture is
refused with the mismatched keys named, and nothing is half-loaded.

Nothing in a checkpoint is trusted:

* its config (metadata or ``.json``) is validated field by field (:func:`odecam.config.validate_config`)
  before the model is built, so a config asking for 10**9 ODE steps or 10**6 keypoints is refused;
* its ``keypoint_roles`` (which keypoint a landmark-guided F_K put on which face part; what the engine's lip
  retargeting reads) must be a short JSON list of short identifiers;
* every weight must be floating point (float32, float16, bfloat16, float64: cast deliberately to the
  model's dtype) and finite; integer tensors, booleans and NaN/Inf values are refused, naming the tensor.

FOMM checkpoints (``vox-cpk.pth.tar``, ``vox-adv-cpk.pth.tar``) are pickles; they are read with
``torch.load(weights_only=True)``, which refuses a pickle that carries code.
"""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from pathlib import Path

import torch

from odecam.config import MAX_CONFIG_BYTES, ModelConfig, preset, validate_config
from odecam.errors import CheckpointError, ConfigError
from odecam.model import MotionTransferModel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_META_CONFIG = "odecam_config"
_META_VERSION = "odecam_format"
#: metadata key: JSON list naming what keypoint m was trained to sit on (landmark-guided F_K), e.g.
#: "inner_upper_lip" (:data:`odecam.training.landmark_loss.LANDMARK_GROUPS`); absent for unsupervised F_K
_META_ROLES = "keypoint_roles"


def save_checkpoint(model: MotionTransferModel, path: str | Path, extra: dict[str, str] | None = None,
                    tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` config. Returns the weights path.

    ``tensors`` (the model's state-dict keys and shapes, e.g. an average of its weights) replace the model's own."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in (tensors or model.state_dict()).items()}
    # the model's own config and format always win over an ``extra`` copied from another checkpoint's metadata
    meta = (extra or {}) | {_META_CONFIG: model.cfg.to_json(), _META_VERSION: str(FORMAT_VERSION)}
    if model.keypoint_roles:
        meta[_META_ROLES] = json.dumps(list(model.keypoint_roles))
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
    where = "metadata"
    beside = path.with_suffix(".json")
    if text is None and beside.is_file():
        where = f"config {beside.name!r}"
        if beside.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"the config {str(beside)!r} beside the checkpoint is over {MAX_CONFIG_BYTES} "
                                  "bytes, not an odecam config; re-save the checkpoint with odecam.")
        text = beside.read_bytes()
    if text is None:
        raise CheckpointError(f"checkpoint {str(path)!r} has no config (metadata or .json beside it); "
                              "save it with odecam.checkpoint.save_checkpoint.")
    try:
        cfg = ModelConfig.from_json(text)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} has an invalid config ({where}): {_clause(exc)}; "
                              "re-save it with odecam or fix that field.") from None
    return cfg, tensors, meta


def _clause(exc: Exception) -> str:
    """An exception's message as a clause inside a sentence: one line, no final full stop."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


#: weight dtypes cast (deliberately, with a log line) to the model's dtype
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_weights(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], source: str,
                  ) -> dict[str, torch.Tensor]:
    """Weights checked against the model's own tensors ``expected`` (same keys and shapes, see
    :func:`check_state_dict`) -> the tensors to load, in the model's dtypes.

    Floating-point parameters and buffers must arrive as float32, float16, bfloat16 or float64 (cast
    here to the model's dtype) and hold only finite values; integer buffers (BatchNorm's
    ``num_batches_tracked``) must be integers. Anything else raises :class:`CheckpointError` naming the
    tensor: integer or boolean weights, complex or 8-bit float tensors, NaN or Inf.
    """
    out: dict[str, torch.Tensor] = {}
    cast: dict[str, int] = {}
    for key, want in expected.items():
        t = tensors[key]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{source}: {key} is a {type(t).__name__}, not a tensor; it is not a checkpoint "
                                  "of weights.")
        if want.is_floating_point():
            if t.dtype not in FLOAT_DTYPES:
                raise CheckpointError(f"{source}: tensor {key} is {str(t.dtype).replace('torch.', '')}, not a "
                                      "float32/float16/bfloat16/float64 weight; the file is damaged or not a "
                                      "model checkpoint, re-save it from the trained model.")
            if t.dtype != want.dtype:
                cast[str(t.dtype).replace("torch.", "")] = cast.get(str(t.dtype).replace("torch.", ""), 0) + 1
                t = t.to(want.dtype)
            finite = torch.isfinite(t)
            if not bool(finite.all()):
                bad = int(finite.numel() - finite.sum())
                raise CheckpointError(f"{source}: tensor {key} holds {bad} NaN or infinite value(s) (of "
                                      f"{t.numel()}); the weights are broken (a diverged training run?), use an "
                                      "earlier checkpoint.")
        else:
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise CheckpointError(f"{source}: tensor {key} is {str(t.dtype).replace('torch.', '')}, where the "
                                      f"model keeps a {str(want.dtype).replace('torch.', '')} counter; the file is "
                                      "damaged or not a model checkpoint.")
            t = t.to(want.dtype)
        out[key] = t
    if cast:
        log.info("%s: cast %s to %s", source, ", ".join(f"{n} {d} tensor(s)" for d, n in sorted(cast.items())),
                 str(next(v for v in expected.values() if v.is_floating_point()).dtype).replace("torch.", ""))
    return out


def check_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str,
                     ) -> dict[str, torch.Tensor]:
    """Raise :class:`CheckpointError` naming missing, unexpected and mis-shaped keys, if any, and tensors
    of the wrong dtype or with non-finite values (:func:`check_weights`). Returns the tensors to load,
    cast to the model's dtypes."""
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
    return check_weights(expected, tensors, source)


def load_checkpoint(path: str | Path, cfg: ModelConfig | None = None, device: str | torch.device = "cpu",
                    ) -> MotionTransferModel:
    """Build the model a checkpoint describes (or ``cfg``) and load its weights, all or nothing."""
    saved_cfg, tensors, meta = read_checkpoint(path)
    if cfg is not None:
        validate_config(cfg)
    model = MotionTransferModel(cfg or saved_cfg)
    tensors = check_state_dict(model, tensors, f"checkpoint {str(path)!r}")
    roles = keypoint_roles(meta, model.cfg.keypoints.num_kp, str(path))
    model.load_state_dict(tensors, strict=True)
    model.keypoint_roles = roles
    return model.to(device).eval()


def role_indices(roles: tuple[str, ...], names: tuple[str, ...]) -> tuple[int, ...] | None:
    """The indices of ``names`` among a model's keypoint roles, in that order, or None when one is missing."""
    return tuple(roles.index(n) for n in names) if all(n in roles for n in names) else None


def keypoint_roles(meta: dict[str, str], num_kp: int, source: str = "checkpoint") -> tuple[str, ...]:
    """The checkpoint's keypoint roles (metadata ``keypoint_roles``): at most ``num_kp`` names, each a short
    identifier; () when absent. Anything else is refused with one sentence."""
    text = meta.get(_META_ROLES)
    if text is None:
        return ()
    try:
        roles = json.loads(text) if len(text) <= 4096 else None
    except (ValueError, RecursionError):
        roles = None
    if (not isinstance(roles, list) or len(roles) > num_kp
            or not all(isinstance(r, str) and 0 < len(r) <= 40 and r.replace("_", "").isalnum() for r in roles)):
        raise CheckpointError(f"checkpoint {source!r} has invalid keypoint roles in its metadata (expected a JSON "
                              f"list of at most {num_kp} names such as \"inner_upper_lip\"); re-save it with odecam.")
    return tuple(roles)


def _torch_load_safely(path: Path) -> dict:
    """``torch.load(weights_only=True)`` with one sentence for every way a file can fail to be a checkpoint."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; check the path.")
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder; pass FOMM's vox-cpk.pth.tar or vox-adv-cpk.pth.tar.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: not the user's business
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "Unsupported global" in text:
            name = text.split("GLOBAL", 1)[1].split()[0] if "GLOBAL" in text else "an object"
            raise CheckpointError(f"{str(path)!r} holds more than tensors ({name[:80]}, refused by "
                                  "torch.load(weights_only=True)); only load checkpoints from sources you trust, "
                                  "as plain weights.") from None
        raise CheckpointError(_NOT_A_CHECKPOINT.format(path=str(path))) from None
    except MemoryError:
        raise CheckpointError(f"{str(path)!r} does not fit in memory; pass FOMM's vox-cpk.pth.tar or "
                              "vox-adv-cpk.pth.tar.") from None
    except Exception:  # noqa: BLE001 - any failure to read a hostile file (KeyError, RuntimeError, ...)
        log.debug("torch.load failed on %s", path, exc_info=True)
        raise CheckpointError(_NOT_A_CHECKPOINT.format(path=str(path))) from None


_NOT_A_CHECKPOINT = ("{path!r} is not a PyTorch checkpoint of plain tensors (torch.load(weights_only=True) cannot read "
                     "it); pass FOMM's vox-cpk.pth.tar or vox-adv-cpk.pth.tar.")


def fomm_state_dict(raw: dict, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Flatten FOMM's {'kp_detector': sd, 'generator': sd, ...} into 'kp_detector.*', 'generator.*' keys."""
    if not isinstance(raw, dict) or "kp_detector" not in raw or "generator" not in raw:
        if isinstance(raw, dict):
            found = "entries " + ", ".join(repr(k)[:40] for k in list(raw)[:6]) if raw else "an empty dict"
        else:
            found = f"a {type(raw).__name__}"
        raise CheckpointError(f"{source} has no 'kp_detector' and 'generator' entries (found {found}); "
                              "pass a First Order Motion Model checkpoint such as vox-cpk.pth.tar.")
    out: dict[str, torch.Tensor] = {}
    for part in ("kp_detector", "generator"):
        sd = raw[part]
        if not isinstance(sd, dict):
            raise CheckpointError(f"{source}: entry {part!r} is a {type(sd).__name__}, not a state dict; pass a "
                                  "First Order Motion Model checkpoint such as vox-cpk.pth.tar.")
        for k, v in sd.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{source}: entry {part!r} has a key {repr(k)[:40]} that is not a name; "
                                      "it is not a First Order Motion Model checkpoint.")
            k = k[len("module."):] if k.startswith("module.") else k
            if not isinstance(v, torch.Tensor):
                raise CheckpointError(f"{source}: {part}.{k[:80]} is not a tensor; it is not a First Order Motion "
                                      "Model checkpoint.")
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
    merged = check_state_dict(model, {**merged, **{k: fomm[k] for k in unexpected}}, f"checkpoint {str(src)!r}")
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
