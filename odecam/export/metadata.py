"""What every exported model carries: the model config and the export format version.

* ONNX: ``metadata_props`` of the model.
* TorchScript: ``_extra_files`` entry ``odecam.json`` of the archive.
* TensorRT (an ExportedProgram holding TensorRT engines): a sidecar ``NAME.json`` beside ``NAME.ep``.

Each entry is a flat ``str -> str`` dict (:func:`graph_metadata`); an export directory also holds
``manifest.json`` (:data:`MANIFEST`) listing its graphs. Readers refuse a format version they do not know.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from odecam.config import ModelConfig
from odecam.errors import OdecamError

#: version of the exported layout (graph split, input/output names, metadata keys). Bump on any change.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TORCHSCRIPT_EXTRA = "odecam.json"

#: the three graphs and what they do
GRAPHS = {
    "avatar": "once per avatar: views (1, V, 3, S, S) -> avatar state tensors",
    "keypoints": "per frame, F_K: driving image (1, 3, S, S) -> raw keypoints (1, K, 2) [+ jacobians]",
    "frame": "per frame: normalised driving keypoints + avatar state tensors -> image (1, 3, S, S), ode_ok",
}
#: file suffix of each format
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "tensorrt": ".ep"}


class ExportError(OdecamError):
    """An export that cannot be written or an exported model that cannot be used."""


def graph_metadata(cfg: ModelConfig, graph: str, fmt: str, inputs: list[str], outputs: list[str],
                   num_views: int, ode_steps: int, precision: str = "fp32", device: str = "cpu") -> dict[str, str]:
    """The metadata of one exported graph (all values are strings)."""
    import torch

    from odecam import __version__

    return {
        "odecam_format_version": str(FORMAT_VERSION),
        "odecam_graph": graph,
        "odecam_format": fmt,
        "odecam_config": cfg.to_json(),
        "odecam_num_views": str(num_views),
        "odecam_ode_steps": str(ode_steps),
        "odecam_precision": precision,
        "odecam_device": device,
        "odecam_inputs": json.dumps(inputs),
        "odecam_outputs": json.dumps(outputs),
        "odecam_version": __version__,
        "odecam_torch_version": torch.__version__,
    }


def check_metadata(meta: dict[str, str], source: str) -> dict[str, Any]:
    """Validate metadata and decode it: {'graph', 'format', 'config' (ModelConfig), 'num_views', 'ode_steps',
    'precision', 'inputs', 'outputs', 'format_version', ...}."""
    if "odecam_format_version" not in meta:
        raise ExportError(f"{source} carries no odecam metadata; export it with 'odecam export'.")
    try:
        version = int(meta["odecam_format_version"])
    except ValueError:
        raise ExportError(f"{source} has an unreadable format version {meta['odecam_format_version']!r}.") from None
    if version != FORMAT_VERSION:
        raise ExportError(f"{source} is in export format {version}, this odecam reads format {FORMAT_VERSION}; "
                          "re-export it with this version of 'odecam export'.")
    try:
        return {
            "format_version": version,
            "graph": meta["odecam_graph"],
            "format": meta["odecam_format"],
            "config": ModelConfig.from_json(meta["odecam_config"]),
            "num_views": int(meta["odecam_num_views"]),
            "ode_steps": int(meta["odecam_ode_steps"]),
            "precision": meta.get("odecam_precision", "fp32"),
            "device": meta.get("odecam_device", "cpu"),
            "inputs": json.loads(meta["odecam_inputs"]),
            "outputs": json.loads(meta["odecam_outputs"]),
            "version": meta.get("odecam_version", ""),
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise ExportError(f"{source} has incomplete odecam metadata ({exc}); re-export it.") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read and validate the metadata of an exported graph file (.onnx, .pt or .ep with its .json)."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"exported model {str(path)!r} does not exist; check the path.")
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in model.metadata_props}
    elif path.suffix == ".pt":
        import torch

        extra = {TORCHSCRIPT_EXTRA: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit is deprecated in torch 2.13 but works
                torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as exc:
            raise ExportError(f"{str(path)!r} is not a TorchScript archive ({str(exc).splitlines()[0][:120]}).") from None
        meta = json.loads(extra[TORCHSCRIPT_EXTRA] or "{}")
    else:
        side = path.with_suffix(".json")
        if not side.exists():
            raise ExportError(f"{str(path)!r} has no metadata file {side.name} beside it; keep the export folder whole.")
        meta = json.loads(side.read_text())
    return check_metadata(meta, repr(str(path)))


def write_manifest(out_dir: Path, cfg: ModelConfig, fmt: str, files: dict[str, str], num_views: int,
                   ode_steps: int, precision: str, extra: dict[str, Any] | None = None) -> Path:
    """Write ``manifest.json``: the format, config and graph files of an export directory."""
    data = {
        "odecam_format_version": FORMAT_VERSION,
        "format": fmt,
        "graphs": {name: {"file": f, "role": GRAPHS[name]} for name, f in files.items()},
        "num_views": num_views,
        "ode_steps": ode_steps,
        "precision": precision,
        "config": cfg.to_dict(),
        "relative_motion": "in the caller, between the keypoints and frame graphs (see odecam.engine.relative_motion)",
    } | (extra or {})
    path = out_dir / MANIFEST
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """Read an export directory's manifest (format version checked)."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    if not path.exists():
        raise ExportError(f"{str(out_dir)!r} is not an odecam export folder (no {MANIFEST}); "
                          "create one with 'odecam export'.")
    data = json.loads(path.read_text())
    version = data.get("odecam_format_version")
    if version != FORMAT_VERSION:
        raise ExportError(f"{str(out_dir)!r} is in export format {version}, this odecam reads format "
                          f"{FORMAT_VERSION}; re-export it with this version of 'odecam export'.")
    data["config"] = ModelConfig.from_dict(data["config"])
    return data
