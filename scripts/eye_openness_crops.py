"""Eye openness read at full resolution: a small CNN on 256 px eye crops placed by F_K's upper-eyelid keypoints.

    python scripts/eye_openness_crops.py [--checkpoint CK] [--data runs/faces256] [--drivers carphone d6.mp4 ...]
        [--steps 3000] [--out /work/runs/eye-crops]

``scripts/eye_openness_probe.py`` found that F_K's own features (64 px) follow the driver's eye openness poorly
(r 0.29-0.71 on the held-out drivers). This asks the next question before any eye retargeting is built: does a
crop of the 256 px frame around each upper-eyelid keypoint carry it?

1. from every training clip of ``--data`` (crops + dlib's 68 landmarks), up to 60 random frames and the clip's 20
   least-open-eyed ones; F_K's keypoints place a ``--crop`` (width, height) grey window on each eye, its centre
   ``--drop`` eye-widths below the upper-eyelid keypoint (the eye width: the distance between the two eyelid
   keypoints x 0.45); the crop is resampled to a fixed 32 x 20 so faces of any size look alike; each eye's label is
   its own openness (lid gap over eye width, dlib), the left eye mirrored;
2. a CNN of a few thousand weights regresses the label (L1, Adam, clips split 80 / 20 for a held-out r);
3. on each driver (framed and levelled as ``odecam eval`` frames it) the mean of the two eyes' predictions is
   correlated with dlib's ``eyes`` signal of the frame.

Writes ``eye_crops.pt`` (the CNN's state dict), the same weights as ``eye_openness.safetensors`` (what blink
retargeting ships as ``odecam/assets/eye_openness.safetensors``) and ``report.json`` to ``--out`` (outside the
repository).
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from odecam.checkpoint import load_checkpoint  # noqa: E402
from odecam.model.eye_openness import EYE_CROP as CROP  # noqa: E402
from odecam.model.eye_openness import EyeOpennessNet  # noqa: E402
from odecam.model.eye_openness import eye_crops as model_eye_crops  # noqa: E402

PROBE = runpy.run_path(str(ROOT / "scripts" / "eye_openness_probe.py"))
EYES = {"right": ((37, 41), (38, 40), (36, 39)), "left": ((43, 47), (44, 46), (42, 45))}


def eye_openness(lm: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 2): lid gap over eye width, the subject's right eye then left."""
    out = []
    for pairs in EYES.values():
        gap = 0.5 * sum(np.linalg.norm(lm[..., i, :] - lm[..., j, :], axis=-1) for i, j in pairs[:2])
        out.append(gap / np.linalg.norm(lm[..., pairs[2][0], :] - lm[..., pairs[2][1], :], axis=-1))
    return np.stack(out, -1)


#: the shipped reader's network (``odecam/assets/eye_openness.safetensors`` is this script's ``eye_crops.pt``)
EyeNet = EyeOpennessNet


@torch.no_grad()
def eyelid_keypoints(model, frames: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) in [0, 1] -> (B, 2, 2) upper-eyelid keypoints (right, left) in pixels."""
    roles = list(model.keypoint_roles)
    kp = model.kp_detector(frames)["value"][:, [roles.index("upper_eyelid_right"), roles.index("upper_eyelid_left")]]
    return ((kp + 1) * 0.5 * (frames.shape[-1] - 1)).numpy()


def eye_crops(rgb: np.ndarray, lids: np.ndarray, drop: float, box: tuple[float, float]) -> np.ndarray:
    """(S, S, 3) uint8 frame and its (2, 2) eyelid keypoints -> (2, 20, 32) float crops, the left eye mirrored
    (:func:`odecam.model.eye_openness.eye_crops` on the grey frame, placed by ``drop`` and ``box``)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return model_eye_crops(grey, lids, drop=drop, box=box)


def collect(model, data: Path, drop: float, box: tuple[float, float], seed: int = 0, per_clip: int = 60,
            lowest: int = 20, jitter: float = 0.0, copies: int = 0):
    """(crops (n, 2, 20, 32), openness (n, 2), clip index (n,)) from the prepared clips: ``per_clip`` random frames a
    clip and its ``lowest`` least-open-eyed (``eye_openness_probe.clip_samples``). ``copies`` > 0: that many more
    crops of each frame, each with both eyelid keypoints moved by N(0, ``jitter`` eye widths) and the box scaled by
    exp(N(0, ``jitter``)) (F_K's keypoints move from frame to frame: a reader that does not move with them is
    steadier)."""
    rng = np.random.default_rng(seed + 1)
    xs, ys, groups = [], [], []
    for gi, imgs, lm in PROBE["clip_samples"](data, model.cfg.image_size, lambda p: eye_openness(p).mean(-1),
                                              per_clip, lowest, seed=seed):
        lids = eyelid_keypoints(model, torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
        for im, lid, label in zip(imgs, lids, eye_openness(lm)):
            width = 0.45 * float(np.linalg.norm(lid[1] - lid[0]))
            for k in range(1 + copies):
                moved, scaled = lid, box
                if k:
                    moved = lid + rng.normal(0.0, jitter * width, lid.shape)
                    scaled = tuple(b * float(np.exp(rng.normal(0.0, jitter))) for b in box)
                xs.append(eye_crops(im, moved, drop, scaled))
                ys.append(label)
                groups.append(gi)
    return np.stack(xs), np.stack(ys).astype(np.float32), np.array(groups)


def degrade(batch: torch.Tensor, blur: float, noise: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Training-time look of a low-resolution or noisy webcam on (B, 1, 20, 32) crops: half of them blurred by a
    Gaussian of sigma U(0, ``blur``) crop pixels (a 176 x 144 driver blown up to 256 px is soft), all with
    N(0, U(0, ``noise``)) pixel noise."""
    if blur > 0:
        n = batch.shape[0]
        sigma = torch.rand(n, generator=gen) * blur
        soft = torch.rand(n, generator=gen) < 0.5
        x = torch.arange(-3, 4, dtype=batch.dtype)
        k = torch.exp(-(x[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)  # (B, 7) separable kernels
        padded = F.pad(batch, (3, 3, 3, 3), mode="replicate")
        rows = sum(k[:, i, None, None, None] * padded[..., :, i:i + batch.shape[-1]] for i in range(7))
        both = sum(k[:, i, None, None, None] * rows[..., i:i + batch.shape[-2], :] for i in range(7))
        batch = torch.where(soft[:, None, None, None], both, batch)
    if noise > 0:
        level = torch.rand(batch.shape[0], 1, 1, 1, generator=gen) * noise
        batch = batch + level * torch.randn(batch.shape, generator=gen)
    return batch


def train(x: np.ndarray, y: np.ndarray, steps: int, seed: int = 0, blur: float = 0.0, noise: float = 0.0) -> EyeNet:
    torch.manual_seed(seed)
    net = EyeNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    xt, yt = torch.from_numpy(x).reshape(-1, 1, CROP[1], CROP[0]), torch.from_numpy(y).reshape(-1)
    for _ in tqdm(range(steps), desc="training", unit="step"):
        idx = torch.randint(0, len(yt), (128,))
        batch = xt[idx]
        flip = torch.rand(len(idx)) < 0.5  # a mirrored eye is still an eye
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        batch = batch * (0.7 + 0.6 * torch.rand(len(idx), 1, 1, 1))  # contrast
        batch = degrade(batch, blur, noise)
        loss = F.l1_loss(net(batch), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: EyeNet, crops: np.ndarray) -> np.ndarray:
    """(N, 2, 20, 32) -> (N,) mean openness of the two eyes."""
    return net(torch.from_numpy(crops).reshape(-1, 1, CROP[1], CROP[0])).reshape(-1, 2).mean(1).numpy()


def driver_correlation(model, net: EyeNet, driver: str, max_frames: int, drop: float,
                       box: tuple[float, float]) -> tuple[float, int]:
    from odecam.engine.images import to_image
    from odecam.evaluation.animation import load_framed_videos
    from odecam.evaluation.expression import face_signals

    video = load_framed_videos(driver, model.cfg.image_size, max_frames=max_frames)[0]
    crops, eyes = [], []
    for i in range(len(video.frames)):
        signals = face_signals(video.frames[i])
        if signals is None:
            continue
        image = video.levelled.get(i, (video.frames[i], 0.0))[0]  # the levelled frame F_K sees, as in live
        lids = eyelid_keypoints(model, image[None])[0]
        crops.append(eye_crops(to_image(image), lids, drop, box))
        eyes.append(signals["eyes"])
    return float(np.corrcoef(predict(net, np.stack(crops)), np.array(eyes))[0, 1]), len(eyes)


def main(argv: list[str] | None = None) -> int:
    ap = PROBE["common_arguments"](argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--drop", type=float, default=0.15, help="crop centre below the eyelid keypoint, in eye widths")
    ap.add_argument("--crop", type=float, nargs=2, default=(1.6, 1.0), help="crop width, height in eye widths")
    ap.add_argument("--per-clip", type=int, default=60, help="random frames a clip (and --lowest least-open ones)")
    ap.add_argument("--lowest", type=int, default=20)
    ap.add_argument("--jitter", type=float, default=0.0, help="eyelid keypoint jitter of the extra crops, eye widths")
    ap.add_argument("--copies", type=int, default=0, help="extra jittered crops of each frame")
    ap.add_argument("--blur", type=float, default=0.0, help="training blur of half the crops: sigma up to this, px")
    ap.add_argument("--noise", type=float, default=0.0, help="training pixel noise: std up to this")
    ap.add_argument("--out", type=Path, default=Path("/work/runs/eye-crops"))
    args = ap.parse_args(argv)
    model = load_checkpoint(args.checkpoint).eval()
    if not {"upper_eyelid_right", "upper_eyelid_left"} <= set(model.keypoint_roles):
        raise SystemExit(f"{args.checkpoint}: its keypoint roles do not name the upper eyelids")
    box = tuple(args.crop)
    x, y, groups = collect(model, args.data, args.drop, box, per_clip=args.per_clip, lowest=args.lowest,
                           jitter=args.jitter, copies=args.copies)
    keep = np.isfinite(y).all(1)
    x, y, groups = x[keep], y[keep], groups[keep]
    test = groups % 5 == 0
    print(f"{len(y)} frames ({int(test.sum())} of held-out clips); openness mean {y.mean():.3f}, std {y.std():.3f}")
    net = train(x[~test].reshape(-1, CROP[1], CROP[0]), y[~test].reshape(-1), args.steps, blur=args.blur,
                noise=args.noise)
    r_clips = float(np.corrcoef(predict(net, x[test]), y[test].mean(1))[0, 1])
    print(f"held-out clips: r = {r_clips:.3f}")
    report = {"frames": int(len(y)), "held_out_clips_r": r_clips, "drop": args.drop, "crop": list(box), "drivers": {}}
    for driver in args.drivers:
        r, n = driver_correlation(model, net, driver, args.max_frames, args.drop, box)
        report["drivers"][Path(driver).stem] = {"r": r, "frames": n}
        print(f"{Path(driver).stem}: r(eye crops, dlib eyes) = {r:.3f} over {n} frames")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out / "eye_crops.pt")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(args.out / "eye_openness.safetensors"))
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
