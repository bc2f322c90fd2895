"""Teach F_K to keep its keypoints where they are when a hand or an object covers part of the face.

    python scripts/occlusion_fk.py --teacher odecam/assets/default.safetensors --data runs/faces256 \\
        --steps 3000 --run /work/runs/occlusion-fk [--resume]

The student is the teacher with F_K trainable and everything else frozen (F_C, F_E, F_A, F_G never see a
changed input on an unoccluded face, so they need no retraining). Each step draws ``--batch`` face crops of the
prepared training data (``odecam prepare-faces``: real clips and portraits, the held-out people excluded there),
puts a random occluder over part of each face (``odecam.training.occluders``: hands, held objects, patches of
other pictures, from the crop's dlib landmarks) and asks

    |F_K'(occluded) - F_K(clean)|_1 + ``--clean-weight`` |F_K'(clean) - F_K(clean)|_1

(keypoints in [-1, 1]; F_K the frozen teacher): the keypoints under the hand stay where the uncovered face puts
them, and the uncovered face's keypoints stay the teacher's. Half of the crops are flipped left-right, and
``--degrade`` of them first made webcam-like (down-scaled and JPEG-compressed), both copies alike: without it
the student kept the teacher's keypoints on sharp faces only and shrank the mouth's motion on carphone's
blurry ones.

The run folder (keep it outside the repository) holds ``state.pt`` (student F_K, optimiser, step; written every
``--save-every`` steps and at the end, read by ``--resume``), ``losses.csv`` and ``losses.png``, and
``student.safetensors``: the whole model with the new F_K and the teacher's metadata. Held-out numbers are
``scripts/occlusion_fk.py --measure`` (below) and ``odecam eval``.

``--measure CKPT [CKPT ...]``: the keypoint drift under a drawn hand (``scripts/hand_over_face.py``'s hand, fully
in, on every frame) on clips never trained on (carphone, d6, d18; framed as ``live`` frames them): the mean distance
in pixels at 256 px between each checkpoint's keypoints on the covered frame and the teacher's on the uncovered
one, and between its keypoints and the teacher's on the uncovered frames. Written to ``--json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELD_OUT = ("carphone",
            "../shared/data/faces/videos/KwaiVGI__LivePortrait__assets__examples__driving__d6.mp4",
            "../shared/data/faces/videos/KwaiVGI__LivePortrait__assets__examples__driving__d18.mp4")


class FaceFrames:
    """Random face crops with landmarks from a ``prepare-faces`` folder: (H, W, 3) uint8 RGB, (68, 2) pixels."""

    def __init__(self, root: str | Path, size: int) -> None:
        from odecam.data.landmarks import normalised_to_pixels

        self.size, self.to_px = size, normalised_to_pixels
        self.items: list[tuple[Path, np.ndarray]] = []  # (image path, landmarks normalised)
        root = Path(root)
        for clip in sorted((root / "videos").glob("*/landmarks.npy")):
            lm = np.load(clip)
            for i in np.where(~np.isnan(lm).any(axis=(1, 2)))[0][::2]:  # every other frame
                self.items.append((clip.parent / f"{i:05d}.jpg", lm[i]))
        for still in sorted((root / "stills").glob("*.npy")):
            lm = np.load(still)
            if not np.isnan(lm).any():
                self.items.append((still.with_suffix(".jpg"), lm))
        if not self.items:
            raise SystemExit(f"no prepared faces under {str(root)!r}; run odecam prepare-faces first")

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        path, lm = self.items[i]
        img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        if img.shape[0] != self.size:
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return img, self.to_px(lm, self.size)


def degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A webcam-like copy of ``img`` (H, W, 3) uint8: down-scaled to 35-100% and back up, then JPEG at quality
    30-90 (carphone, the evaluation clip, is 176x144 video up-scaled to 256 px)."""
    h, w = img.shape[:2]
    s = rng.uniform(0.35, 1.0)
    small = cv2.resize(img, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else img


def make_batch(rng: np.random.Generator, faces: FaceFrames, batch: int,
               degrade_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, occluded): two (B, 3, S, S) float tensors in [0, 1]; with probability ``degrade_prob`` a face is
    first made webcam-like (:func:`degrade`), both copies alike."""
    from odecam.training.occluders import random_occluder

    clean, occluded = [], []
    for _ in range(batch):
        img, lm = faces.get(int(rng.integers(len(faces))))
        if rng.random() < degrade_prob:
            img = degrade(rng, img)
        donor, _ = faces.get(int(rng.integers(len(faces))))
        occ, _ = random_occluder(rng, img, lm, donor)
        if rng.random() < 0.5:
            img, occ = img[:, ::-1], occ[:, ::-1]
        clean.append(np.ascontiguousarray(img))
        occluded.append(np.ascontiguousarray(occ))

    def stack(imgs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255.0)

    return stack(clean), stack(occluded)


def plot_losses(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("occluded", "clean"):
        ax.plot(steps, [r[key] for r in rows], label=f"|F_K'({key}) - F_K(clean)| (px at 256)")
    ax.set_xlabel("step")
    ax.set_ylabel("mean keypoint distance, px")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def train(args: argparse.Namespace) -> int:
    from odecam.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

    torch.manual_seed(args.seed)
    teacher = load_checkpoint(args.teacher).eval()
    student = load_checkpoint(args.teacher).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    for name, p in student.named_parameters():
        p.requires_grad_(name.startswith("kp_detector."))
    fk = student.kp_detector
    fk.eval()  # BatchNorm keeps the teacher's statistics: only the weights move
    opt = torch.optim.Adam([p for p in fk.parameters() if p.requires_grad], lr=args.lr)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    state_file, rows, step = run / "state.pt", [], 0
    if args.resume and state_file.exists():
        state = torch.load(state_file, weights_only=True)
        fk.load_state_dict(state["kp_detector"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        with open(run / "losses.csv") as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        print(f"resumed {run} at step {step}")
    faces = FaceFrames(args.data, teacher.cfg.image_size)
    print(f"{len(faces)} training faces; teacher {args.teacher}; F_K {sum(p.numel() for p in fk.parameters())} params")
    rng = np.random.default_rng(args.seed + step)
    half = teacher.cfg.image_size / 2.0  # [-1, 1] -> pixels at the model's size (align_corners)

    def save() -> None:
        torch.save({"kp_detector": fk.state_dict(), "optimizer": opt.state_dict(), "step": step}, state_file)
        with open(run / "losses.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step", "occluded", "clean"])
            w.writeheader()
            w.writerows([{k: (int(v) if k == "step" else v) for k, v in r.items()} for r in rows])
        plot_losses(rows, run / "losses.png")

    acc = {"occluded": 0.0, "clean": 0.0, "n": 0}
    bar = tqdm(total=args.steps, initial=step, desc="F_K under occluders", unit="step")
    t0 = time.time()
    while step < args.steps:
        clean, occluded = make_batch(rng, faces, args.batch, args.degrade)
        with torch.no_grad():
            target = teacher.kp_detector(clean)["value"]
        out = fk(torch.cat([occluded, clean]))["value"]
        d_occ = (out[: len(clean)] - target).abs().mean()
        d_clean = (out[len(clean):] - target).abs().mean()
        loss = d_occ + args.clean_weight * d_clean
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        with torch.no_grad():  # mean Euclidean distance in pixels, for the log
            acc["occluded"] += float((out[: len(clean)] - target).norm(dim=-1).mean() * half)
            acc["clean"] += float((out[len(clean):] - target).norm(dim=-1).mean() * half)
            acc["n"] += 1
        bar.update(1)
        if step % args.log_every == 0 or step == args.steps:
            rows.append({"step": step, "occluded": acc["occluded"] / acc["n"], "clean": acc["clean"] / acc["n"]})
            bar.set_postfix(occluded=f"{rows[-1]['occluded']:.2f}px", clean=f"{rows[-1]['clean']:.2f}px")
            acc = {"occluded": 0.0, "clean": 0.0, "n": 0}
        if step % args.save_every == 0 or step == args.steps:
            save()
    bar.close()
    _, _, meta = read_checkpoint(args.teacher)
    note = (f" Then F_K alone fine-tuned for {step} steps to keep its keypoints under synthetic occluders "
            f"(scripts/occlusion_fk.py, batch {args.batch}, lr {args.lr}, clean weight {args.clean_weight}, "
            f"degraded share {args.degrade}).")
    extra = {k: v for k, v in meta.items() if k not in ("odecam_config", "odecam_format")}
    extra["trained_on"] = (extra.get("trained_on", "").rstrip(". ") + "." + note).lstrip(". ")
    out = save_checkpoint(student, run / "student.safetensors", extra=extra)
    print(f"wrote {out} ({time.time() - t0:.0f} s this run)")
    return 0


def hand_covered_frames(clip: str | Path, size: int, max_frames: int | None = None,
                        step: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every ``step``-th frame of ``clip`` (a path or carphone) framed as ``live`` frames a webcam, where dlib finds
    the face, and the same frames with ``scripts/hand_over_face.py``'s hand fully in: two lists of (S, S, 3) uint8
    RGB."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from hand_over_face import draw_hand

    from odecam.assets import video_path
    from odecam.engine.images import to_image
    from odecam.evaluation.animation import load_framed_videos
    from odecam.evaluation.expression import landmarks68

    video = load_framed_videos(str(video_path(clip)), size, max_frames=max_frames)[0]
    clean, covered = [], []
    for i in range(0, len(video.frames), step):
        rgb = to_image(video.frames[i:i + 1])
        lm = landmarks68(rgb)
        if lm is not None:
            clean.append(rgb)
            covered.append(cv2.cvtColor(draw_hand(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), lm, 1.0), cv2.COLOR_BGR2RGB))
    return clean, covered


def keypoints(model, images: list[np.ndarray]) -> torch.Tensor:
    """F_K of ``model`` on (S, S, 3) uint8 RGB images, 32 at a time: (T, K, 2) in [-1, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return torch.cat([model.kp_detector(x[i:i + 32])["value"] for i in range(0, len(x), 32)])


def measure(args: argparse.Namespace) -> int:
    """Keypoint drift under the drawn hand on held-out clips, per checkpoint (see the module docstring)."""
    from odecam.assets import video_path
    from odecam.checkpoint import load_checkpoint

    teacher = load_checkpoint(args.teacher).eval()
    models = {c: load_checkpoint(c).eval() for c in args.measure}
    size = teacher.cfg.image_size
    half = size / 2.0
    result: dict = {"teacher": args.teacher, "clips": {}}
    for spec in args.clips:
        clean, covered = hand_covered_frames(spec, size, args.max_frames)
        ref = keypoints(teacher, clean)
        row = {"frames": len(clean)}
        for name, model in [("teacher", teacher)] + list(models.items()):
            under = (keypoints(model, covered) - ref).norm(dim=-1) * half  # (T, K) px
            off = (keypoints(model, clean) - ref).norm(dim=-1) * half
            row[name] = {"under_hand_px": float(under.mean()), "under_hand_px_p95": float(under.quantile(0.95)),
                         "per_keypoint_under_hand_px": [round(float(v), 2) for v in under.mean(0)],
                         "clean_px": float(off.mean())}
        result["clips"][Path(str(video_path(spec))).stem] = row
        print(Path(spec).stem, json.dumps({k: (v if not isinstance(v, dict) else
                                                {kk: vv for kk, vv in v.items() if kk != "per_keypoint_under_hand_px"})
                                           for k, v in row.items()}))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=str(ROOT / "odecam" / "assets" / "default.safetensors"))
    ap.add_argument("--data", default="runs/faces256", help="an odecam prepare-faces folder")
    ap.add_argument("--run", default="/work/runs/occlusion-fk", help="run folder (outside the repository)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--clean-weight", type=float, default=4.0)
    ap.add_argument("--degrade", type=float, default=0.5,
                    help="share of faces made webcam-like first (down-scaled, JPEG), clean and occluded alike")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--resume", action="store_true", help="continue the run folder's state.pt")
    ap.add_argument("--measure", nargs="+", default=None, metavar="CKPT",
                    help="measure these checkpoints' keypoint drift under a drawn hand instead of training")
    ap.add_argument("--clips", nargs="+", default=list(HELD_OUT), help="clips for --measure")
    ap.add_argument("--max-frames", type=int, default=200)
    ap.add_argument("--json", default=None, help="--measure: write the numbers here")
    args = ap.parse_args(argv)
    return measure(args) if args.measure else train(args)


if __name__ == "__main__":
    raise SystemExit(main())
