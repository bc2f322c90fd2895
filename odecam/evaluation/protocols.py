"""The paper's evaluation protocols (section 4) over real videos.

* ``reconstruction``: per video, the source is the first frame, N references are taken from the same
  video (evenly spaced), and every later frame is a driving frame; the output is compared with it
  (L1, PSNR, SSIM, MS-SSIM, FID against the driving frames, AKD). Absolute keypoints, as in FOMM.
* ``animation``: source and driving come from different videos (video i is driven by video i+1); relative
  motion; FID against the source images and CSIM to the source (identity preservation).

A *method* maps (views (1, V, 3, S, S), driving frame (1, 3, S, S)) to a prediction; :func:`model_method`
wraps a checkpoint through the engine's cached :class:`Avatar` / :class:`Animator`, :func:`no_motion`
is the baseline that outputs the source image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from odecam.engine.images import to_image, to_tensor
from odecam.errors import OdecamError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")

METRIC_KEYS = ("l1", "psnr", "ssim", "ms_ssim", "fid", "akd", "csim")


@dataclass
class EvalVideo:
    name: str
    frames: torch.Tensor  # (T, 3, S, S) float in [0, 1]


def list_videos(path: str | Path) -> list[Path]:
    """A video file, a folder of videos, or a FOMM layout (its test/ split)."""
    p = Path(path)
    if not p.exists():
        raise OdecamError(f"evaluation data {str(p)!r} does not exist; pass a video file or a folder of videos.")
    if p.is_file():
        return [p]
    root = p / "test" if (p / "test").is_dir() else p
    vids = sorted(q for q in root.iterdir() if q.suffix.lower() in VIDEO_EXTS)
    if not vids:
        raise OdecamError(f"no videos ({', '.join(VIDEO_EXTS)}) in {str(root)!r}; pass a video file or a folder of videos.")
    return vids


def load_videos(path: str | Path, size: int, max_frames: int | None = None, min_frames: int = 2) -> list[EvalVideo]:
    """Decode videos as centre square crops resized to ``size``."""
    from odecam.engine.video import read_frames

    out = []
    for v in list_videos(path):
        frames = [to_tensor(f, size) for f in read_frames(v, max_frames, role="evaluation video")]
        if len(frames) < min_frames:
            raise OdecamError(f"evaluation video {v.name!r} has {len(frames)} frames; it needs at least {min_frames} "
                              "(source, references and a driving frame).")
        out.append(EvalVideo(v.stem, torch.cat(frames)))
    return out


def reference_indices(num_frames: int, num_refs: int) -> list[int]:
    """N reference frames spread evenly over the video, never the source (frame 0)."""
    if num_refs <= 0:
        return []
    return [int(round(x)) for x in np.linspace(1, num_frames - 1, num_refs + 2)[1:-1]] if num_frames > 2 else [1] * num_refs


Method = Callable[[torch.Tensor, Iterator[torch.Tensor], bool], Iterator[torch.Tensor]]


def model_method(model) -> Method:
    """Views (1, V, 3, S, S) and driving frames -> predictions, through the engine's avatar cache."""
    from odecam.engine import Animator, Avatar

    def run(views: torch.Tensor, driving: Iterator[torch.Tensor], relative: bool) -> Iterator[torch.Tensor]:
        images = [to_image(v) for v in views[0]]
        avatar = Avatar(model, images[0], images[1:])
        animator = Animator(model, avatar, relative=relative)
        param = next(model.parameters())
        for d in driving:
            value, jac = animator.keypoints(to_image(d))
            yield animator.render_tensor(value, jac).to(param.dtype).cpu()

    return run


def no_motion(views: torch.Tensor, driving: Iterator[torch.Tensor], relative: bool) -> Iterator[torch.Tensor]:
    """Baseline: the output is the source image."""
    for _ in driving:
        yield views[:, 0]


@dataclass
class EvalResult:
    metrics: dict[str, float | None]
    frames: int
    extra: dict = field(default_factory=dict)


def evaluate(method: Method, videos: list[EvalVideo], protocol: str, num_refs: int, *, fid: bool = True,
             face_metrics: bool = True, save_frames: Path | None = None, desc: str = "evaluating") -> EvalResult:
    """Run a protocol over videos and return each metric's mean (None where it doesn't apply)."""
    from odecam.evaluation.metrics import AKDAccumulator, CSIMAccumulator, FIDAccumulator, ReconstructionAccumulator

    if protocol not in ("reconstruction", "animation"):
        raise OdecamError(f"unknown protocol {protocol!r}; use reconstruction or animation.")
    if protocol == "animation" and len(videos) < 2:
        raise OdecamError("the animation protocol needs at least two videos (source and driving from different videos).")
    recon = ReconstructionAccumulator()
    fid_acc = FIDAccumulator() if fid else None
    akd_acc = AKDAccumulator() if face_metrics and protocol == "reconstruction" else None
    csim_acc = CSIMAccumulator() if face_metrics and protocol == "animation" else None
    if save_frames is not None:
        save_frames.mkdir(parents=True, exist_ok=True)
    n = 0
    total = sum(len(v.frames) - 1 for v in videos)
    bar = tqdm(total=total, desc=desc, unit="frame", leave=False)
    for i, video in enumerate(videos):
        src_video = video
        drv_video = video if protocol == "reconstruction" else videos[(i + 1) % len(videos)]
        refs = reference_indices(len(src_video.frames), num_refs)
        views = src_video.frames[[0] + refs].unsqueeze(0)
        driving = drv_video.frames[1:] if protocol == "reconstruction" else drv_video.frames
        preds = method(views, iter(driving), protocol == "animation")
        for d, p in zip(driving, preds):
            d, p = d.unsqueeze(0), p.reshape(1, *p.shape[-3:])
            if protocol == "reconstruction":
                recon.add(p, d)
                real = d
            else:
                real = views[:, 0]
            if fid_acc is not None:
                fid_acc.add_real(real)
                fid_acc.add_fake(p)
            if akd_acc is not None:
                akd_acc.add([to_image(d)], [to_image(p)])
            if csim_acc is not None:
                csim_acc.add([to_image(views[:, 0])], [to_image(p)])
            if save_frames is not None:
                import cv2

                cv2.imwrite(str(save_frames / f"{n:05d}_real.png"), cv2.cvtColor(to_image(real), cv2.COLOR_RGB2BGR))
                cv2.imwrite(str(save_frames / f"{n:05d}_fake.png"), cv2.cvtColor(to_image(p), cv2.COLOR_RGB2BGR))
            n += 1
            bar.update(1)
    bar.close()
    metrics: dict[str, float | None] = {k: None for k in METRIC_KEYS}
    extra: dict = {}
    if protocol == "reconstruction":
        r = recon.compute()
        for k in ("l1", "psnr", "ssim", "ms_ssim"):
            metrics[k] = r.get(k)
    if fid_acc is not None:
        metrics["fid"] = fid_acc.compute()
    if akd_acc is not None:
        res = akd_acc.compute()
        metrics["akd"] = res.value
        extra["akd_pairs"], extra["akd_skipped"] = res.pairs, res.skipped
    if csim_acc is not None:
        res = csim_acc.compute()
        metrics["csim"] = res.value
        extra["csim_pairs"], extra["csim_skipped"] = res.pairs, res.skipped
    return EvalResult(metrics, n, extra)


def markdown_table(rows: dict[str, EvalResult]) -> str:
    """A markdown table: one row per method, one column per metric (— where it doesn't apply)."""
    head = "| method | frames | L1 ↓ | PSNR ↑ | SSIM ↑ | MS-SSIM ↑ | FID ↓ | AKD ↓ | CSIM ↑ |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    fmt = {"l1": "{:.4f}", "psnr": "{:.2f}", "ssim": "{:.3f}", "ms_ssim": "{:.3f}", "fid": "{:.1f}", "akd": "{:.2f}",
           "csim": "{:.3f}"}
    lines = [head, sep]
    for name, r in rows.items():
        cells = [fmt[k].format(r.metrics[k]) if r.metrics.get(k) is not None else "—" for k in METRIC_KEYS]
        lines.append(f"| {name} | {r.frames} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
