"""Give a trained model F_G's pixel-shuffle head (``generator.pixel_shuffle`` 2), distilled from its own last
up-block and output convolutions.

    python scripts/distill_head.py --teacher odecam/assets/default.safetensors --data faces:runs/faces256 \\
        --pairs 800 --steps 3000 --out runs/shuffle-head/student.safetensors

The student is the teacher with the last up-block (nearest 2x upsample, 3x3 convolution, BN, ReLU at full
resolution) and the 3x3 output convolutions replaced by one 3x3 convolution at half resolution whose 16 outputs
are the RGB and mask M logits of the 4 phases of each 2x2 pixel block, put in place by ``pixel_shuffle``. Every
other weight is the teacher's, unchanged. The head's input is the first up-block's output, which the two
models share, so the head is fitted on recorded tensors without running the rest of the model again:

1. record, for ``--pairs`` (source, driving) pairs of the training data (N = 0 or 1 reference views, as the
   model runs), the first up-block's output X (32, S/2, S/2), the teacher's decoded image and mask logits
   (4, S, S), its fused warped view image W (3, S, S) and the driving frame;
2. start from the least-squares fit of the teacher's logits (pixel_unshuffled to (16, S/2, S/2); with
   ``--factor 4`` the head replaces the last two up-blocks: (64, S/4, S/4)) on X's 3x3 neighbourhoods;
3. train the head (Adam; with ``--train-up-block`` also the up-block that feeds it) so that the blended frame M W + (1 - M) decoded equals the teacher's (weighted up
   where the teacher's decoder paints, ``--painted-weight``), with a smaller weight on M itself and on the
   driving frame (``--real``).

A teacher that already has the pixel-shuffle head (``generator.pixel_shuffle`` = ``--factor``) gets a new one, e.g. a
1x1 head (``--kernel 1``): X is then the output of its last up-block (and X0 that block's input, for
``--train-up-block``), the logits its own head's.

Writes the student checkpoint (with the teacher's metadata and keypoint roles) and ``distill.json`` beside it:
the held-out pairs' PSNR of the student's frame against the teacher's, before and after training.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from odecam.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402
from odecam.model import MotionTransferModel  # noqa: E402
from odecam.model.generator import blend_skip, warp_images  # noqa: E402


def student_of(teacher: MotionTransferModel, factor: int = 2, kernel: int | None = None) -> MotionTransferModel:
    """The teacher's architecture with the pixel-shuffle head (``factor`` 2 or 4, its convolution ``kernel`` x
    ``kernel``, default the teacher's ``final_kernel``); every weight but the head's copied."""
    kernel = kernel or teacher.cfg.generator.final_kernel
    student = MotionTransferModel(teacher.cfg.replace(**{"generator.pixel_shuffle": factor,
                                                         "generator.final_kernel": kernel})).eval()
    own = student.state_dict()
    shared = {k: v for k, v in teacher.state_dict().items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(shared))
    if any(not (k.startswith("generator.final") or k.startswith("generator.skip_mask")) for k in skipped):
        raise SystemExit(f"unexpected parameters without a teacher value: {skipped}")
    student.load_state_dict(shared, strict=False)
    student.keypoint_roles = teacher.keypoint_roles
    return student


def teacher_runs(teacher: MotionTransferModel, dataset, pairs: int, seed: int, want=None, candidates: int | None = None):
    """Yield (item, views (1, V, 3, S, S), avatar state, ``animate``'s output with ``skip_tail``: decoded and M, not
    blended) for ``pairs`` seeded random items of ``dataset``, N = 0 and 1 reference views alternately.

    ``want(item) -> bool``: items it refuses are skipped before the teacher runs, looking at up to ``candidates``
    items in all (default ``pairs``)."""
    rng = random.Random(seed)
    n = 0
    with tqdm(total=pairs, desc="recording the teacher", unit="pair") as bar:
        for _ in range(candidates or pairs):
            if n == pairs:
                return
            item = dataset[rng.randrange(len(dataset))]
            if want is not None and not want(item):
                continue
            views = item["source"][None, None]
            if n % 2 and item["refs"].shape[0] > 0:
                views = torch.cat([views, item["refs"][None, :1]], 1)
            state = teacher.prepare_views(views)
            kp = teacher.kp_detector(item["driving"][None])["value"]
            n += 1
            bar.update()
            yield item, views, state, teacher.animate(state, kp, num_views=views.shape[1], skip_tail=True)


@torch.no_grad()
def record(teacher: MotionTransferModel, dataset, pairs: int, seed: int, factor: int = 2,
           block_input: bool = False) -> dict[str, torch.Tensor]:
    """Run the teacher on ``pairs`` items (N = 0 or 1, alternately) and keep what the head needs (float16):
    'x' the head's input (the output of the up-block before the last), 'logits' the teacher's RGB and M
    logits (4, S, S), 'warped' its fused warped view image, 'driving' the driving frame; with ``block_input``
    also 'x0', the input of the up-block that feeds the head (trained with it: ``--train-up-block``)."""
    g = teacher.generator
    seen: dict[str, torch.Tensor] = {}
    if g.shuffle == factor:  # a new head for a teacher that has one: same input, its logits from its own head
        def on_block(m, i, o):
            seen.update(x=o, x0=i[0])
            y = F.conv2d(o, torch.cat([g.final.weight, g.skip_mask.weight]), torch.cat([g.final.bias, g.skip_mask.bias]),
                         padding=g.final.padding)
            seen["rgb"], seen["mask"] = F.pixel_shuffle(y, factor).split([g.final.out_channels // factor ** 2, 1], 1)
        hooks = [g.up_blocks[-1].register_forward_hook(on_block)]
    else:
        dropped = {2: 1, 4: 2}[factor]  # the up-blocks the head replaces; it reads the first one's input
        hooks = [g.up_blocks[-dropped].register_forward_pre_hook(lambda m, i: seen.__setitem__("x", i[0])),
                 g.final.register_forward_hook(lambda m, i, o: seen.__setitem__("rgb", o)),
                 g.skip_mask.register_forward_hook(lambda m, i, o: seen.__setitem__("mask", o))]
        if block_input:
            hooks.append(g.up_blocks[-dropped - 1].register_forward_pre_hook(lambda m, i: seen.__setitem__("x0", i[0])))
    keep: dict[str, list[torch.Tensor]] = {"x": [], "logits": [], "warped": [], "driving": []}
    if block_input:
        keep["x0"] = []
    for item, _, state, out in teacher_runs(teacher, dataset, pairs, seed):
        keep["x"].append(seen["x"].half())
        keep["logits"].append(torch.cat([seen["rgb"], seen["mask"]], 1).half())
        keep["warped"].append(warp_images(state["image"], out["displacement"], out["weights"]).half())
        keep["driving"].append(item["driving"][None].half())
        if block_input:
            keep["x0"].append(seen["x0"].half())
    for h in hooks:
        h.remove()
    return {k: torch.cat(v) for k, v in keep.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="odecam/assets/default.safetensors")
    ap.add_argument("--data", default="faces:runs/faces256")
    ap.add_argument("--pairs", type=int, default=800)
    ap.add_argument("--held-out", type=int, default=64, help="pairs kept out of the fit, for the PSNR report")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--mask-weight", type=float, default=0.5)
    ap.add_argument("--real", type=float, default=0.1, help="weight of L1 to the driving frame")
    ap.add_argument("--painted-weight", type=float, default=0.0,
                    help="extra weight of the frame L1 where the teacher's decoder paints: 1 + this x (1 - M)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factor", type=int, default=2, choices=[2, 4], help="generator.pixel_shuffle of the student")
    ap.add_argument("--train-up-block", action="store_true",
                    help="train the up-block that feeds the head too (from the teacher's weights)")
    ap.add_argument("--kernel", type=int, default=None, choices=[1, 3],
                    help="the head's kernel size (generator.final_kernel; default the teacher's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    teacher = load_checkpoint(args.teacher).eval()
    if teacher.cfg.generator.pixel_shuffle not in (1, args.factor) or not teacher.cfg.generator.image_skip:
        raise SystemExit(f"the teacher must have the image skip and the up-sampling head (or pixel_shuffle {args.factor}: "
                         "a new head for it)")
    if teacher.generator.shuffle == args.factor and len(teacher.generator.up_blocks) == 0:
        raise SystemExit("the teacher's head reads the bottleneck directly (no up-block left): nothing to re-fit it from")
    _, _, meta = read_checkpoint(args.teacher)
    student = student_of(teacher, args.factor, args.kernel)
    from odecam.training.datasets import build_dataset

    dataset = build_dataset(args.data, image_size=teacher.cfg.image_size, num_refs=1, seed=args.seed)
    t0 = time.time()
    rec = record(teacher, dataset, args.pairs + args.held_out, args.seed, args.factor, args.train_up_block)
    print(f"recorded {args.pairs + args.held_out} pairs in {time.time() - t0:.0f} s")
    fit = {k: v[: args.pairs] for k, v in rec.items()}
    test = {k: v[args.pairs:] for k, v in rec.items()}

    g = student.generator
    weight, bias = least_squares_head(fit["x"], fit["logits"], g.final.kernel_size[0], args.factor)
    load_head(g, weight, bias)
    report = {"teacher": args.teacher, "pairs": args.pairs, "held_out": args.held_out,
              "psnr_before": psnr_vs_teacher(g, test)}
    print(f"least-squares head: held-out PSNR against the teacher's frames {report['psnr_before']}")

    params = [g.final.weight, g.final.bias, g.skip_mask.weight, g.skip_mask.bias]
    if args.train_up_block:  # the up-block feeding the head learns with it (batch-norm statistics kept)
        params += list(g.up_blocks[-1].parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    n = fit["x"].shape[0]
    curve = []
    for step in tqdm(range(args.steps), desc="training the head", unit="step"):
        idx = torch.randint(0, n, (args.batch,))
        batch = {k: v[idx].float() for k, v in fit.items()}
        frame_s, mask_s = head_frame(g, batch)
        frame_t, mask_t = teacher_frame(batch)
        loss = distill_loss(frame_s, mask_s, frame_t, mask_t, batch["driving"], args)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            curve.append((step, loss.item()))
    report["psnr_after"] = psnr_vs_teacher(g, test)
    report["loss_curve"] = curve
    print(f"trained head: held-out PSNR against the teacher's frames {report['psnr_after']}")
    k = student.cfg.generator.final_kernel
    what = (f"F_G's pixel-shuffle head re-fitted as a {k}x{k} convolution (generator.final_kernel {k}) from that model's "
            f"{teacher.cfg.generator.final_kernel}x{teacher.cfg.generator.final_kernel} one" if teacher.generator.shuffle == args.factor
            else f"F_G's pixel-shuffle head (x{args.factor}, {k}x{k}) distilled from that model's up-blocks and output convolutions")
    note = (f"{meta.get('trained_on', '')}; {what}{' with the up-block feeding it' if args.train_up_block else ''} "
            f"(scripts/distill_head.py, {args.pairs} pairs, {args.steps} steps, painted weight {args.painted_weight:g})")
    save_distilled(student, meta, note, report, out_path)
    return 0


def distill_loss(frame_s: torch.Tensor, mask_s: torch.Tensor, frame_t: torch.Tensor, mask_t: torch.Tensor,
                 driving: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """L1 of the student's blended frame against the teacher's, weighted ``1 + painted_weight x (1 - M_teacher)``
    (up where the teacher's decoder paints), + ``mask_weight`` x L1 of M + ``real`` x L1 to the driving frame."""
    weight = 1.0 + args.painted_weight * (1.0 - mask_t)
    return ((weight * (frame_s - frame_t).abs()).mean() + args.mask_weight * (mask_s - mask_t).abs().mean()
            + args.real * (frame_s - driving).abs().mean())


def save_distilled(student: MotionTransferModel, meta: dict[str, str], note: str, report: dict, out_path: Path) -> None:
    """Write the student with the teacher's metadata (``trained_on`` = ``note``) and ``distill.json`` beside it."""
    extra = {k: v for k, v in meta.items() if not k.startswith("odecam_") and k != "keypoint_roles"}
    extra["trained_on"] = note.lstrip("; ")
    save_checkpoint(student, out_path, extra=extra)
    out_path.with_name("distill.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_path}")


def least_squares_head(x: torch.Tensor, logits: torch.Tensor, k: int, factor: int = 2, samples: int = 200_000,
                       ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """The k x k convolution (16, C, k, k) + bias that best maps X (P, C, h, w) to the teacher's logits
    pixel_unshuffled to (P, 4 * factor^2, h, w), in least squares over ``samples`` random pixels."""
    p, c, h, w = x.shape
    target = F.pixel_unshuffle(logits.float(), factor)  # (P, 4 r^2, h, w): channel c r^2 + phase, as pixel_shuffle reads
    gen = torch.Generator().manual_seed(0)
    rows, ys = [], []
    per = max(1, samples // p)
    for i in range(p):
        cols = F.unfold(x[i:i + 1].float(), k, padding=k // 2)[0]  # (C k k, h w)
        pick = torch.randint(0, h * w, (per,), generator=gen)
        rows.append(cols[:, pick].t())
        ys.append(target[i].reshape(target.shape[1], -1)[:, pick].t())
    a = torch.cat(rows)
    a = torch.cat([a, torch.ones(a.shape[0], 1)], 1).double()
    y = torch.cat(ys).double()
    gram = a.t() @ a + ridge * a.shape[0] * torch.eye(a.shape[1], dtype=torch.float64)
    sol = torch.linalg.solve(gram, a.t() @ y)  # (C k k + 1, 16)
    weight = sol[:-1].t().reshape(-1, c, k, k).float()
    return weight, sol[-1].float()


def load_head(g, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Split the fitted 16-output convolution into F_G's ``final`` (RGB x 4 phases) and ``skip_mask`` (4)."""
    rgb = g.final.out_channels
    with torch.no_grad():
        g.final.weight.copy_(weight[:rgb])
        g.final.bias.copy_(bias[:rgb])
        g.skip_mask.weight.copy_(weight[rgb:])
        g.skip_mask.bias.copy_(bias[rgb:])


def head_frame(g, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's blended frame and mask from recorded X (or X0 through the student's last up-block) and W."""
    rgb, mask = g.shuffle_head(g.up_blocks[-1](batch["x0"]) if "x0" in batch else batch["x"])
    return blend_skip(rgb, mask, batch["warped"]), mask


def teacher_frame(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's blended frame and mask from its recorded logits and W."""
    y = torch.sigmoid(batch["logits"])
    return blend_skip(y[:, :3], y[:, 3:], batch["warped"]), y[:, 3:]


@torch.no_grad()
def psnr_vs_teacher(g, test: dict[str, torch.Tensor]) -> dict[str, float]:
    """PSNR (dB, images in [0, 1]) of the student's frames against the teacher's on the held-out pairs: 'frame'
    the mean over frames, 'painted' over the pixels the teacher's decoder paints (its M < 0.5), pooled."""
    vals, err, count = [], 0.0, 0
    for i in range(test["x"].shape[0]):
        batch = {k: v[i:i + 1].float() for k, v in test.items()}
        frame_t, mask_t = teacher_frame(batch)
        sq = (head_frame(g, batch)[0] - frame_t) ** 2
        vals.append(10 * math.log10(1.0 / max(float(sq.mean()), 1e-12)))
        painted = (mask_t < 0.5).expand_as(sq)
        err, count = err + float(sq[painted].sum()), count + int(painted.sum())
    return {"frame": sum(vals) / max(len(vals), 1),
            "painted": 10 * math.log10(count / max(err, 1e-12)) if count else float("nan"),
            "painted_share": count / (3 * test["x"].shape[0] * g.shuffle ** 2 * test["x"].shape[2] * test["x"].shape[3])}


if __name__ == "__main__":
    raise SystemExit(main())
