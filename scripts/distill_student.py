"""Distil a trained model's F_G and F_A into a narrower student (fewer channels: a faster frame), keeping its
F_K, F_C and F_E, and so its motion, bit for bit.

    python scripts/distill_student.py --set generator.block_expansion=8 appearance.hidden=8 \\
        --pairs 1600 --steps 4000 --out runs/student-be8/student.safetensors

The student is the teacher's config with the ``--set`` overrides (only F_G's and F_A's sizes may change:
``generator.block_expansion``, ``generator.max_features``, ``generator.num_bottleneck_blocks``,
``appearance.hidden``, ``appearance.num_blocks``). F_K, F_C and F_E are the teacher's, so for any driving frame
both models compute the same motion fields T^(j), occlusion maps, view weights C~^(j) and fused warped image W;
what is learned is how the student encodes the views (F_S), inpaints them (F_A) and decodes (F_G). So:

1. record, for ``--pairs`` (source, driving) pairs of the training data (N = 0 or 1 reference views,
   alternately), the views, the teacher's fields, occlusion and view weights, W, its decoded image and mask M
   (before the blend) and the driving frame;
2. train the student's encoder, F_A, fusion mix and decoder from scratch (Adam, cosine schedule) on those
   tensors: L1 of the blended frame M W + (1 - M) decoded against the teacher's (weighted ``1 + painted x (1 - M)``
   where the teacher's decoder paints), ``--mask-weight`` x L1 of M, ``--real`` x L1 against the driving frame.
   F_A is learned through its effect on the frame only: the teacher's T_App points far outside the feature map
   where F_A is not wanted (100 px on average at 64 px), so matching it would teach nothing useful.

Writes the student checkpoint (the teacher's metadata and keypoint roles) and ``distill.json`` beside it: the
held-out pairs' PSNR of the student's frame against the teacher's, over the frame and over the pixels the
teacher's decoder paints (M < 0.5), and the loss curve. Resumes from ``OUT`` + ``.partial.pt`` (weights and
optimiser state, written every ``--save-every`` steps; a plain state dict, loaded with ``weights_only=True``).
``--init`` starts a fine-tune stage from an earlier student of the same sizes (fresh optimiser and schedule), e.g.
more weight on the pixels the teacher paints at a lower learning rate:

    python scripts/distill_student.py --init runs/student-be8/student.safetensors --painted-weight 60 \\
        --lr 3e-4 --steps 1000 --out runs/student-be8-p60/student.safetensors
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from odecam.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from odecam.model import MotionTransferModel  # noqa: E402
from odecam.model.generator import blend_skip, warp_images  # noqa: E402
from distill_head import distill_loss, save_distilled, teacher_runs  # noqa: E402  (shared with the head's distillation)

#: config fields the student may change: sizes of F_G (encoder, decoder) and F_A only
STUDENT_FIELDS = ("generator.block_expansion", "generator.max_features", "generator.num_bottleneck_blocks",
                  "appearance.hidden", "appearance.num_blocks")
#: parameter prefixes the student takes from the teacher unchanged (F_K, F_C, F_E: the motion)
MOTION_PREFIXES = ("kp_detector.", "generator.dense_motion_network.", "generator.evolution.")


def parse_overrides(pairs: list[str]) -> dict[str, int]:
    """``["generator.block_expansion=8", ...]`` -> {field: int}; refuses fields outside :data:`STUDENT_FIELDS`."""
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or key not in STUDENT_FIELDS:
            raise SystemExit(f"--set {item!r}: use FIELD=INT with FIELD one of {', '.join(STUDENT_FIELDS)}")
        out[key] = int(value)
    return out


def student_of(teacher: MotionTransferModel, overrides: dict[str, int], seed: int = 0) -> MotionTransferModel:
    """The teacher's config with ``overrides``; F_K, F_C and F_E copied from the teacher, the rest freshly
    initialised (:class:`~odecam.model.generator.Generator`'s own initialisation: F_A and the mix start as the
    identity, M trusting the warped views)."""
    torch.manual_seed(seed)
    student = MotionTransferModel(teacher.cfg.replace(**overrides)).eval()
    motion = {k: v for k, v in teacher.state_dict().items() if k.startswith(MOTION_PREFIXES)}
    missing = student.load_state_dict(motion, strict=False).missing_keys
    if any(k.startswith(MOTION_PREFIXES) for k in missing):
        raise SystemExit(f"the student's motion modules differ from the teacher's: {missing[:4]}")
    student.keypoint_roles = teacher.keypoint_roles
    return student


def trainable(student: MotionTransferModel) -> list[torch.nn.Parameter]:
    """The student's own parameters: everything but F_K, F_C and F_E."""
    return [p for k, p in student.named_parameters() if not k.startswith(MOTION_PREFIXES)]


def mouth_opening(landmarks: torch.Tensor) -> float:
    """The driver's mouth opening from its 68 landmarks (68, 2): inner-lip gap over the eye-corner distance, as
    ``odecam eval`` measures it (:func:`odecam.evaluation.expression.face_signals`); 0 without landmarks."""
    pts = landmarks.double()
    span = float((pts[45] - pts[36]).norm())
    if not math.isfinite(span) or span < 1e-6:
        return 0.0
    gap = sum(float((pts[i] - pts[j]).norm()) for i, j in ((61, 67), (62, 66), (63, 65))) / 3
    return gap / span if math.isfinite(gap) else 0.0


@torch.no_grad()
def record(teacher: MotionTransferModel, dataset, pairs: int, seed: int, open_share: float = 0.0,
           open_min: float = 0.15) -> list[dict[str, torch.Tensor]]:
    """Run the teacher on ``pairs`` items (N = 0 and 1 alternately) and keep, per pair (float16, batch dim 1):
    'views' (V, 3, S, S), 'displacement' (V, 2, h_m, w_m), 'occlusion' (V, 1, h, w), 'weights' (1, V, 1, h, w),
    'warped' W (1, 3, S, S), 'decoded' and 'mask' (the teacher's, before the blend), 'driving' (1, 3, S, S).

    ``open_share`` > 0: at least that share of the kept pairs have the driver's mouth open (:func:`mouth_opening`
    of the item's ``driving_landmarks`` >= ``open_min``, the teacher painting the interior), drawn from up to 8x
    ``pairs`` candidates (the others are skipped before the teacher runs); the rest are kept as they come. If the
    candidates run out first, fewer pairs are returned."""
    want_open = int(round(open_share * pairs))
    opened, plain = [], []

    def is_open(item) -> bool:
        return "driving_landmarks" in item and mouth_opening(item["driving_landmarks"]) >= open_min

    def want(item) -> bool:  # decided before the teacher runs: each quota; open pairs may also fill the plain one's rest
        if want_open == 0:
            return True
        if is_open(item):
            return len(opened) < want_open or len(plain) >= pairs - want_open
        return len(plain) < pairs - want_open

    for item, views, state, out in teacher_runs(teacher, dataset, pairs, seed, want, 8 * pairs if want_open else None):
        rec = {"views": views[0], "displacement": out["displacement"], "occlusion": out["occlusion"],
               "weights": out["weights"], "warped": warp_images(state["image"], out["displacement"], out["weights"]),
               "decoded": out["prediction"], "mask": out["skip_mask"], "driving": item["driving"][None]}
        rec = {k: v.half() for k, v in rec.items()}
        (opened if want_open and is_open(item) and len(opened) < want_open else plain).append(rec)
    if len(opened) < want_open:
        print(f"only {len(opened)} of the {8 * pairs} candidates had the driver's mouth open (>= {open_min:g}); "
              f"{len(opened) + len(plain)} pairs recorded")
    out_pairs = opened + plain
    if want_open:  # the open-mouth pairs spread over the fit and held-out parts
        random.Random(seed).shuffle(out_pairs)
    return out_pairs


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pairs with the same number of views -> one batch (float32): per-view tensors concatenated item by item
    (views of one item contiguous, as :meth:`Generator.fuse` groups them), the rest stacked on the batch dim."""
    return {k: torch.cat([it[k] for it in items]).float() for k in items[0]}


def student_frame(student: MotionTransferModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's blended frame (B, 3, S, S) and M (B, 1, S, S) on the teacher's motion."""
    g = student.generator
    b, v = batch["weights"].shape[:2]
    warped, ident, occlusion = g.warp_views(g.encode(batch["views"]), batch["displacement"], batch["occlusion"])
    logits = batch["weights"].clamp_min(1e-12).log().reshape(b * v, 1, *batch["weights"].shape[3:])
    fused, _ = g.fuse(warped, ident, occlusion, logits, v)  # softmax over views of log C~ = the teacher's C~
    rgb, mask = g.decode_parts(fused)
    return blend_skip(rgb, mask, batch["warped"]), mask


def teacher_frame(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return blend_skip(batch["decoded"], batch["mask"], batch["warped"])


@torch.no_grad()
def psnr_vs_teacher(student: MotionTransferModel, test: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """PSNR (dB) of the student's frames against the teacher's on held-out pairs: 'frame' the mean over frames,
    'painted' over the pixels the teacher's decoder paints (its M < 0.5), pooled; 'painted_share' their share."""
    student.eval()
    vals, err, count, total = [], 0.0, 0, 0
    for item in test:
        batch = collate([item])
        frame_t = teacher_frame(batch)
        sq = (student_frame(student, batch)[0] - frame_t) ** 2
        vals.append(10 * math.log10(1.0 / max(float(sq.mean()), 1e-12)))
        painted = (batch["mask"] < 0.5).expand_as(sq)
        err, count, total = err + float(sq[painted].sum()), count + int(painted.sum()), total + sq.numel()
    return {"frame": sum(vals) / max(len(vals), 1),
            "painted": 10 * math.log10(count / max(err, 1e-12)) if count else float("nan"),
            "painted_share": count / max(total, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="odecam/assets/default.safetensors")
    ap.add_argument("--data", default="faces:runs/faces256")
    ap.add_argument("--set", nargs="+", default=["generator.block_expansion=8", "appearance.hidden=8"],
                    metavar="FIELD=INT", help=f"the student's sizes (fields: {', '.join(STUDENT_FIELDS)})")
    ap.add_argument("--pairs", type=int, default=1600)
    ap.add_argument("--held-out", type=int, default=64, help="pairs kept out of the fit, for the PSNR report")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--mask-weight", type=float, default=0.5)
    ap.add_argument("--painted-weight", type=float, default=20.0,
                    help="extra weight of the frame L1 where the teacher's decoder paints: 1 + this x (1 - M)")
    ap.add_argument("--real", type=float, default=0.1, help="weight of L1 to the driving frame")
    ap.add_argument("--open-share", type=float, default=0.0,
                    help="at least this share of the recorded pairs have the driver's mouth open (inner-lip gap >= "
                         "--open-min eye-corner distances, from the data's landmarks), drawn from up to 8x as many "
                         "candidates; 0 = pairs as they come")
    ap.add_argument("--open-min", type=float, default=0.15,
                    help="--open-share's open mouth: inner-lip gap over the eye-corner distance (0.15: open; 0.3: wide)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=250, help="steps between resumable partial saves")
    ap.add_argument("--init", default=None, metavar="STUDENT.safetensors",
                    help="start from this student (a checkpoint written by this script with the same --set) with a "
                         "fresh optimiser and schedule: a fine-tune stage, e.g. a higher --painted-weight at a lower --lr")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    overrides = parse_overrides(args.set)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial.pt")

    teacher = load_checkpoint(args.teacher).eval()
    if not teacher.cfg.generator.image_skip:
        raise SystemExit("the teacher must have the image skip (generator.image_skip)")
    _, _, meta = read_checkpoint(args.teacher)
    student = student_of(teacher, overrides, args.seed)
    if args.init:
        start_from = load_checkpoint(args.init)
        if start_from.cfg != student.cfg:
            raise SystemExit(f"--init {args.init}: its architecture is not the student's (same --set as that run?)")
        own = {k: v for k, v in start_from.state_dict().items() if not k.startswith(MOTION_PREFIXES)}
        student.load_state_dict(own, strict=False)  # F_K, F_C, F_E stay the teacher's
    from odecam.training.datasets import build_dataset

    dataset = build_dataset(args.data, image_size=teacher.cfg.image_size, num_refs=1, seed=args.seed)
    t0 = time.time()
    rec = record(teacher, dataset, args.pairs + args.held_out, args.seed, args.open_share, args.open_min)
    print(f"recorded {len(rec)} pairs in {time.time() - t0:.0f} s")
    fit, test = rec[: args.pairs], rec[args.pairs:]
    groups = [[it for it in fit if it["views"].shape[0] == v] for v in (1, 2)]
    groups = [gr for gr in groups if gr]

    params = trainable(student)
    opt = torch.optim.Adam(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    start, curve = 0, []
    if partial.exists():
        saved = torch.load(partial, weights_only=True)
        student.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        start, curve = int(saved["step"]), [tuple(c) for c in saved["curve"].tolist()]
        print(f"resumed at step {start}")
    report = {"teacher": args.teacher, "student": overrides, "pairs": args.pairs, "held_out": args.held_out,
              "init": args.init, "steps": args.steps, "lr": args.lr, "painted_weight": args.painted_weight,
              "open_share": args.open_share, "open_min": args.open_min, "data": args.data,
              "params_m": {"teacher": sum(p.numel() for p in teacher.parameters()) / 1e6,
                           "student": sum(p.numel() for p in student.parameters()) / 1e6}}
    if start == 0:
        report["psnr_before"] = psnr_vs_teacher(student, test)
        print(f"untrained student: held-out PSNR against the teacher's frames {report['psnr_before']}")
    rng = random.Random(args.seed + start)
    for step in tqdm(range(start, args.steps), desc="training the student", unit="step", initial=start,
                     total=args.steps):
        student.train()
        for name in ("kp_detector", "generator.dense_motion_network", "generator.evolution"):
            student.get_submodule(name).eval()
        group = groups[step % len(groups)]
        batch = collate([group[rng.randrange(len(group))] for _ in range(args.batch)])
        frame_s, mask_s = student_frame(student, batch)
        frame_t = teacher_frame(batch)
        loss = distill_loss(frame_s, mask_s, frame_t, batch["mask"], batch["driving"], args)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            curve.append((step, loss.item()))
        if (step + 1) % args.save_every == 0:
            torch.save({"model": student.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": torch.tensor(step + 1), "curve": torch.tensor(curve)}, partial)
    student.eval()
    report["psnr"] = psnr_vs_teacher(student, test)
    report["loss_curve"] = curve
    print(f"student: held-out PSNR against the teacher's frames {report['psnr']}")
    if args.init:  # a fine-tune stage: the earlier student's history, then this stage
        note = (f"{read_checkpoint(args.init)[2].get('trained_on', '')}; then {args.steps} steps of "
                f"scripts/distill_student.py --init (painted weight {args.painted_weight:g}, lr {args.lr:g})")
    else:
        sizes = ", ".join(f"{k} {v}" for k, v in overrides.items())
        note = (f"{meta.get('trained_on', '')}; F_G and F_A narrowed ({sizes}) and distilled from that model "
                f"(scripts/distill_student.py, {args.pairs} pairs, {args.steps} steps)")
    save_distilled(student, meta, note, report, out_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
