"""Can F_K see a blink? A linear probe of F_K's features at the upper-eyelid keypoints against eye openness.

    python scripts/eye_openness_probe.py [--checkpoint CK] [--data runs/faces256] [--drivers carphone d6.mp4 ...]

Blinks do not transfer (``eyes_corr`` about 0 on every driver). Before building eye retargeting on F_K, this
asks whether F_K's own features carry the driver's eye openness at all:

1. from every training clip of ``--data`` (``odecam prepare-faces`` output: crops + dlib's 68 landmarks), take up
   to 40 random frames and the clip's 20 least-open-eyed ones; label each with its eye openness (the eyelid gap
   over the eye-corner distance, ``odecam eval``'s ``eyes`` signal, from the stored landmarks);
2. pool F_K's last feature map (the hourglass output, 64 x 64 at 256 px) under the two upper-eyelid heatmaps
   (as they are, and blurred 5 x 5), a (4 C) vector per frame;
3. fit a ridge regression (standardised features, 5-fold cross-validation by clip for the penalty), and report
   the held-out-clip correlation and, on each driver (framed and levelled as ``odecam eval`` frames it), the
   correlation of the prediction with dlib's ``eyes`` signal of the frame, beside that of the eyelid keypoints'
   height above the nose tip (the keypoints' own geometry).

Needs a checkpoint whose keypoint roles name the upper eyelids (the shipped default's do).
"""

from __future__ import annotations

import argparse
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

LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))


def openness(lm: np.ndarray) -> np.ndarray:
    """Eyelid gap over the outer eye-corner distance of landmarks (..., 68, 2)."""
    gap = np.mean([np.linalg.norm(lm[..., i, :] - lm[..., j, :], axis=-1) for i, j in LID_PAIRS], axis=0)
    return gap / np.linalg.norm(lm[..., 45, :] - lm[..., 36, :], axis=-1)


@torch.no_grad()
def eyelid_features(model, images: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) in [0, 1] -> (B, 4 C): F_K's feature map pooled under the two upper-eyelid heatmaps."""
    kd = model.kp_detector
    roles = list(model.keypoint_roles)
    lids = [roles.index("upper_eyelid_right"), roles.index("upper_eyelid_left")]
    x = kd.down(images) if kd.down is not None else images
    fmap = kd.predictor(x)
    logits = kd.kp(fmap)
    b, k, h, w = logits.shape
    heat = F.softmax(logits.view(b, k, -1) / kd.cfg.temperature, 2).view(b, k, h, w)[:, lids]
    wide = F.avg_pool2d(heat, 5, 1, 2)
    wide = wide / wide.sum((2, 3), keepdim=True)
    return torch.cat([torch.einsum("bkhw,bchw->bkc", m, fmap).flatten(1) for m in (heat, wide)], 1).numpy()


def clip_samples(data: Path, size: int, label, random_per_clip: int, lowest_per_clip: int = 20, seed: int = 0):
    """Yield (clip index, frames (n, S, S, 3) uint8 RGB, their landmarks (n, 68, 2)) for every prepared clip under
    ``data/videos`` (``odecam prepare-faces``): up to ``random_per_clip`` random frames with landmarks and the
    ``lowest_per_clip`` frames of least ``label(landmarks)`` (the least-open eyes)."""
    rng = np.random.default_rng(seed)
    for gi, clip in enumerate(tqdm(sorted((data / "videos").iterdir()), desc="clips", unit="clip")):
        lm_file = clip / "landmarks.npy"
        if not lm_file.exists():
            continue
        lm = np.load(lm_file)
        known = np.where(np.isfinite(lm).all((1, 2)))[0]
        if len(known) < 10:
            continue
        lowest = known[np.argsort(label(lm[known]))[:lowest_per_clip]]
        pick = np.unique(np.concatenate([rng.choice(known, min(random_per_clip, len(known)), replace=False), lowest]))
        imgs = [cv2.cvtColor(cv2.imread(str(clip / f"{i:05d}.jpg")), cv2.COLOR_BGR2RGB) for i in pick]
        imgs = [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) if im.shape[0] != size else im
                for im in imgs]
        yield gi, np.stack(imgs), lm[pick]


def collect(model, data: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (n, D), openness (n,), clip index (n,)) from the prepared clips under ``data/videos``."""
    xs, ys, groups = [], [], []
    for gi, imgs, lm in clip_samples(data, model.cfg.image_size, openness, 40, seed=seed):
        xs.append(eyelid_features(model, torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255))
        ys.append(openness(lm))
        groups += [gi] * len(lm)
    return np.concatenate(xs), np.concatenate(ys), np.array(groups)


def ridge(x: np.ndarray, y: np.ndarray, lam: float):
    """The ridge fit on standardised features -> predict(x_new)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return lambda xn: ((xn - mu) / sd) @ w + y.mean()


def driver_correlation(model, predict, driver: str, max_frames: int) -> tuple[float, float, int]:
    """Pearson r with dlib's ``eyes`` signal over a driver's framed frames of (the probe's openness, the eyelid
    keypoints' height above the nose tip over their distance apart), and the number of frames."""
    from odecam.engine.animator import unroll_keypoints
    from odecam.evaluation.animation import load_framed_videos
    from odecam.evaluation.expression import face_signals

    roles = list(model.keypoint_roles)
    right, left, nose = (roles.index(r) for r in ("upper_eyelid_right", "upper_eyelid_left", "nose_tip"))
    video = load_framed_videos(driver, model.cfg.image_size, max_frames=max_frames)[0]
    feats, heights, eyes = [], [], []
    for i in range(len(video.frames)):
        signals = face_signals(video.frames[i])
        if signals is None:
            continue
        image, roll = video.levelled.get(i, (video.frames[i], 0.0))  # F_K sees the levelled frame, as in live
        feats.append(eyelid_features(model, image[None])[0])
        with torch.no_grad():
            kp = model.kp_detector(image[None])["value"]
        kp = (unroll_keypoints(kp, None, roll)[0] if roll else kp)[0].numpy()
        heights.append((kp[nose, 1] - 0.5 * (kp[right, 1] + kp[left, 1])) / np.linalg.norm(kp[right] - kp[left]))
        eyes.append(signals["eyes"])
    eyes_a = np.array(eyes)
    r_probe = float(np.corrcoef(predict(np.array(feats)), eyes_a)[0, 1])
    return r_probe, float(np.corrcoef(np.array(heights), eyes_a)[0, 1]), len(eyes)


def common_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options the eye scripts share: the model, the prepared training data, the drivers and their length."""
    ap.add_argument("--checkpoint", default=str(ROOT / "odecam" / "assets" / "default.safetensors"))
    ap.add_argument("--data", type=Path, default=ROOT / "runs" / "faces256")
    ap.add_argument("--drivers", nargs="+", default=["carphone"])
    ap.add_argument("--max-frames", type=int, default=200)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = common_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args(argv)
    model = load_checkpoint(args.checkpoint).eval()
    if not {"upper_eyelid_right", "upper_eyelid_left"} <= set(model.keypoint_roles):
        raise SystemExit(f"{args.checkpoint}: its keypoint roles do not name the upper eyelids")
    x, y, groups = collect(model, args.data)
    keep = np.isfinite(y)
    x, y, groups = x[keep], y[keep], groups[keep]
    print(f"{len(y)} frames of {len(set(groups))} clips; openness mean {y.mean():.3f}, std {y.std():.3f}")
    best = (-2.0, 0.0)
    for lam in (1.0, 10.0, 100.0, 1000.0):
        pred = np.empty_like(y)
        for fold in range(5):
            test = groups % 5 == fold
            pred[test] = ridge(x[~test], y[~test], lam)(x[test])
        r = float(np.corrcoef(pred, y)[0, 1])
        print(f"ridge {lam:g}: held-out clips r = {r:.3f}")
        best = max(best, (r, lam))
    predict = ridge(x, y, best[1])
    for driver in args.drivers:
        r, r_height, n = driver_correlation(model, predict, driver, args.max_frames)
        print(f"{Path(driver).stem}: r(probe, dlib eyes) = {r:.3f}, r(eyelid keypoints' height, dlib eyes) = "
              f"{r_height:.3f} over {n} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
