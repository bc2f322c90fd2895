"""The paper's evaluation protocols (section 4) over real videos, and odecam's photo animation.

* ``reconstruction``: per video, the source is the first frame, N references are taken from the same
  video (evenly spaced), and every later frame is a driving frame; the output is compared with it
  (L1, PSNR, SSIM, MS-SSIM, FID against the driving frames, AKD). Absolute keypoints, as in FOMM.
* ``animation``: source and driving come from different videos (video i is driven by video i+1); relative
  motion; FID against the source images and CSIM to the source (identity preservation).
* ``animation`` with a ``source`` photo (``odecam eval --source``): one photo (framed to its face, N=0)
  driven by every video (framed like ``live``, see :mod:`odecam.evaluation.animation`), relative motion,
  as ``demo`` and ``live`` run; CSIM to the photo; no FID (one real image is no distribution).

Every protocol also scores expression and head-pose transfer of (driving frame, output) pairs with
:mod:`odecam.evaluation.expression` (``mouth_corr`` ... ``face_rate``). :class:`EvalResult.notes` says
why a metric is ``None`` ("—" in :func:`odecam.evaluation.report.markdown_table`).

A *method* maps (views (1, V, 3, S, S), driving frame (3, S, S)) to a prediction; a driving item may
instead be a pair (levelled frame (3, S, S), roll in degrees): the face turned level for F_K, whose keypoints
turn back by ``roll`` (:attr:`EvalVideo.levelled`, live's levelling); the scored driving frame stays the
unturned one. :func:`model_method`
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
    """A driving (or source) video: ``frames`` (T, 3, S, S) float in [0, 1], what is shown and scored;
    ``levelled``: frame index -> (that frame turned level for F_K (3, S, S), roll in degrees) where the
    framing levelled the face (:attr:`odecam.realtime.framing.Framing.level_image`)."""

    name: str
    frames: torch.Tensor
    levelled: dict[int, tuple[torch.Tensor, float]] = field(default_factory=dict)

    def driving_inputs(self, start: int = 0) -> Iterator[torch.Tensor | tuple[torch.Tensor, float]]:
        """The method's driving items from frame ``start`` on: the frame, or (levelled frame, roll)."""
        for i in range(start, len(self.frames)):
            yield self.levelled.get(i, self.frames[i])


def list_videos(path: str | Path) -> list[Path]:
    """A video file, a folder of videos, a FOMM layout (its test/ split), or ``carphone`` (the embedded clip)."""
    from odecam.assets import video_path

    p = video_path(path)
    if not p.exists():
        raise OdecamError(f"evaluation data {str(p)!r} does not exist; pass a video file, a folder of videos or "
                          "'carphone' (the built-in clip).")
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


def model_method(model, backend="torch", precision: str = "fp32", lip_gain: float | None = None,
                 blink: bool | None = None, mouth_cavity: bool | None = None, placement=None) -> Method:
    """Views (1, V, 3, S, S) and driving frames -> predictions, through the engine's avatar cache and the
    given inference backend: a name (``auto`` included, see :func:`odecam.engine.threads.choose_backend`)
    or a built :class:`~odecam.engine.backends.Backend` (see :func:`odecam.engine.backends.get_backend`).
    ``lip_gain``: the engine's lip retargeting in relative mode (None = its default for the model); ``blink``: its
    blink retargeting and ``mouth_cavity`` its mouth retargeting (None = on where the model and the avatar allow
    it). ``placement``: where the source view lies in its photo (:class:`odecam.engine.paste_back.Placement`;
    the image skip's surroundings, as the commands give them), or None."""
    from odecam.engine import Animator, Avatar

    if isinstance(backend, str) and backend.strip().lower() == "auto":
        from odecam.engine.threads import choose_backend

        backend = choose_backend(backend)

    def run(views: torch.Tensor, driving: Iterator[torch.Tensor], relative: bool) -> Iterator[torch.Tensor]:
        images = [to_image(v) for v in views[0]]
        avatar = Avatar(model, images[0], images[1:], placement=placement)
        animator = Animator(model, avatar, relative=relative, backend=backend, precision=precision,
                            lip_gain=lip_gain, blink=blink, mouth_cavity=mouth_cavity)
        for d in driving:
            frame, roll = d if isinstance(d, tuple) else (d, 0.0)  # (levelled frame, roll): turned back by F_K's caller
            value, jac = animator.keypoints(to_image(frame), roll)
            yield animator.render_tensor(value, jac).float().cpu()

    return run


def no_motion(views: torch.Tensor, driving: Iterator[torch.Tensor], relative: bool) -> Iterator[torch.Tensor]:
    """Baseline: the output is the source image."""
    for _ in driving:
        yield views[:, 0]


@dataclass
class EvalResult:
    """One method's scores: ``metrics`` (:data:`METRIC_KEYS`, ``None`` where it does not apply),
    ``frames`` evaluated, ``extra`` (AKD / CSIM pair counts), ``expression`` (the JSON keys of
    :meth:`ExpressionResult.as_dict`, or None when not scored) and ``notes``: metric -> why it is None."""

    metrics: dict[str, float | None]
    frames: int
    extra: dict = field(default_factory=dict)
    expression: dict | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        """Metrics, frame count, pair counts, expression keys and the notes, one flat dict."""
        return dict(self.metrics, frames=self.frames, **self.extra, **(self.expression or {}),
                    not_applicable=dict(self.notes))


NO_TRUTH = "animation: the driver is another person, so there is no ground-truth frame"


def evaluate(method: Method, videos: list[EvalVideo], protocol: str, num_refs: int, *, fid: bool = True,
             face_metrics: bool = True, save_frames: Path | None = None, desc: str = "evaluating",
             source: torch.Tensor | None = None, driver_signals: dict | None = None) -> EvalResult:
    """Run a protocol over videos and return each metric's mean (None where it doesn't apply).

    ``source``: (1, 3, S, S) avatar photo for the photo animation protocol (then every video drives it;
    ``num_refs`` must be 0). ``face_metrics``: AKD, CSIM and the expression signals (dlib).
    ``driver_signals``: a dict shared between calls over the same videos, caching the driving frames'
    landmark signals. ``save_frames``: NNNNN_real.png (the driving frame) and NNNNN_fake.png (the output).
    """
    from odecam.evaluation.expression import ExpressionAccumulator, face_signals
    from odecam.evaluation.metrics import AKDAccumulator, CSIMAccumulator, FIDAccumulator, ReconstructionAccumulator

    if protocol not in ("reconstruction", "animation"):
        raise OdecamError(f"unknown protocol {protocol!r}; use reconstruction or animation.")
    photo = source is not None
    if photo and protocol != "animation":
        raise OdecamError("a source photo is driven by other people's videos: use it with --protocol animation.")
    if photo and num_refs:
        raise OdecamError(f"the photo animation uses the photo alone (N=0); drop --refs {num_refs}.")
    if protocol == "animation" and not photo and len(videos) < 2:
        raise OdecamError("the animation protocol needs at least two videos (source and driving from different "
                          "videos), or one avatar photo: pass --source IMAGE (or --source astronaut).")
    recon = ReconstructionAccumulator()
    fid_acc = FIDAccumulator() if fid and not photo else None
    akd_acc = AKDAccumulator() if face_metrics and protocol == "reconstruction" else None
    csim_acc = CSIMAccumulator() if face_metrics and protocol == "animation" else None
    expr = ExpressionAccumulator() if face_metrics else None
    cache = driver_signals if driver_signals is not None else {}
    if save_frames is not None:
        save_frames.mkdir(parents=True, exist_ok=True)
    n = 0
    total = sum(len(v.frames) - (protocol == "reconstruction") for v in videos)
    bar = tqdm(total=total, desc=desc, unit="frame", leave=False)
    for i, video in enumerate(videos):
        drv_video = video if protocol == "reconstruction" or photo else videos[(i + 1) % len(videos)]
        if photo:
            views = source.reshape(1, 1, *source.shape[-3:])
        else:
            refs = reference_indices(len(video.frames), num_refs)
            views = video.frames[[0] + refs].unsqueeze(0)
        start = 1 if protocol == "reconstruction" else 0
        driving = drv_video.frames[start:]  # scored as they are; the method may get them levelled
        preds = method(views, drv_video.driving_inputs(start), protocol == "animation")
        for j, (d, p) in enumerate(zip(driving, preds)):
            d, p = d.unsqueeze(0), p.reshape(1, *p.shape[-3:]).float()
            if protocol == "reconstruction":
                recon.add(p, d)
            if fid_acc is not None:
                fid_acc.add_real(d if protocol == "reconstruction" else views[:, 0])
                fid_acc.add_fake(p)
            if akd_acc is not None:
                akd_acc.add([to_image(d)], [to_image(p)])
            if csim_acc is not None:
                csim_acc.add([to_image(views[:, 0])], [to_image(p)])
            if expr is not None:
                key = (drv_video.name, protocol, j)
                if key not in cache:
                    cache[key] = face_signals(d[0])
                expr.add_signals(cache[key], face_signals(p[0]))
            if save_frames is not None:
                import cv2

                cv2.imwrite(str(save_frames / f"{n:05d}_real.png"), cv2.cvtColor(to_image(d), cv2.COLOR_RGB2BGR))
                cv2.imwrite(str(save_frames / f"{n:05d}_fake.png"), cv2.cvtColor(to_image(p), cv2.COLOR_RGB2BGR))
            n += 1
            bar.update(1)
    bar.close()
    metrics: dict[str, float | None] = {k: None for k in METRIC_KEYS}
    extra: dict = {}
    notes: dict[str, str] = {}
    if protocol == "reconstruction":
        r = recon.compute()
        for k in ("l1", "psnr", "ssim", "ms_ssim"):
            metrics[k] = r.get(k)
    else:
        notes.update(dict.fromkeys(("l1", "psnr", "ssim", "ms_ssim"), NO_TRUTH))
    if fid_acc is not None:
        metrics["fid"] = fid_acc.compute()
        if metrics["fid"] is None:
            notes["fid"] = "FID needs at least two real and two generated frames"
    else:
        notes["fid"] = ("one source photo: FID needs a set of real images" if fid and photo
                        else "FID was skipped (--no-fid)")
    no_face = "no pair had a face in both images"
    if akd_acc is not None:
        res = akd_acc.compute()
        metrics["akd"] = res.value
        extra["akd_pairs"], extra["akd_skipped"] = res.pairs, res.skipped
        if res.value is None:
            notes["akd"] = no_face
    else:
        notes["akd"] = ("AKD compares landmarks of the same face; in animation the avatar is another person"
                        if protocol == "animation" else "face metrics were skipped (--no-face-metrics)")
    if csim_acc is not None:
        res = csim_acc.compute()
        metrics["csim"] = res.value
        extra["csim_pairs"], extra["csim_skipped"] = res.pairs, res.skipped
        if res.value is None:
            notes["csim"] = no_face
    else:
        notes["csim"] = ("CSIM is identity preservation in animation; in reconstruction the target is the "
                         "source's own video" if protocol == "reconstruction"
                         else "face metrics were skipped (--no-face-metrics)")
    expression = None
    if expr is not None:
        er = expr.compute()
        expression = er.as_dict()
        notes.update(er.notes())
    else:
        notes["expression"] = "face metrics were skipped (--no-face-metrics)"
    return EvalResult(metrics, n, extra, expression, notes)
