"""Where the mouth cavity lands on still portraits: the painted pixels against dlib's inner-lip polygon.

    python scripts/cavity_placement.py [--stills DIR] [--checkpoint CK] [--json OUT.json] [--sheet OUT.png]

Mouth retargeting (:mod:`odecam.engine.mouth`) paints a dark cavity under the upper teeth of a smiling photo, once
per avatar, placed by F_K's mouth keypoints. This scores that placement from the outside, per portrait with teeth
(every image of ``--stills`` framed as the commands frame a photo, plus the built-in astronaut): dlib's 68 landmarks
(points 60-67, the inner lips; evaluation only, as in ``odecam eval``) give the mouth opening, grown by one pixel,
and the cavity is the pixels the painter changed by more than 60 (sum over RGB, 0-255). Reported per portrait and
as the median / mean / max over them:

* ``outside``: the share of the cavity outside the opening (paint on the lips or skin; 0 is best);
* ``covered``: the share of the opening painted (the upper teeth stay, so about half is a full cavity).

``--sheet`` writes mouth | teeth found (green) | painted, three times enlarged, for every portrait with teeth.
``--cuts`` also scores the built-in astronaut cut at 32 other squares around her face (sides 150-230 px, centred
and shifted by 6 px), where F_K's mouth keypoints move by a few pixels with the cut: how much the placement depends
on the framing (result key ``cuts``; a cut where no teeth are found is not scored).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def score_portrait(image: np.ndarray, points: np.ndarray, inner_lips: np.ndarray) -> dict | None:
    """(S, S, 3) uint8 RGB portrait, its (4, 2) mouth points (F_K), dlib's (8, 2) inner-lip points -> the scores
    of its painted cavity (``outside``, ``covered``, ``painted`` pixels, ``teeth`` pixels), or None without teeth."""
    from odecam.engine.mouth import mouth_axis, open_mouth_image, teeth_mask

    axis = mouth_axis(image)
    painted = open_mouth_image(image, points, axis)
    if painted is None:
        return None
    opening = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(opening, [np.round(inner_lips).astype(np.int32)], 1)
    opening = cv2.dilate(opening, np.ones((3, 3), np.uint8)) > 0
    cavity = np.abs(painted.astype(int) - image.astype(int)).sum(-1) > 60
    if not cavity.any():
        return None
    return {"outside": float((cavity & ~opening).sum() / cavity.sum()),
            "covered": float((cavity & opening).sum() / max(int(opening.sum()), 1)),
            "painted": int(cavity.sum()), "teeth": int(teeth_mask(image, points, axis).sum()),
            "_painted": painted}


def summary(rows: list[dict]) -> dict:
    out = {"portraits": len(rows)}
    for key in ("outside", "covered"):
        v = np.array([r[key] for r in rows]) if rows else np.zeros(0)
        out[key] = {"median": float(np.median(v)) if len(v) else None, "mean": float(v.mean()) if len(v) else None,
                    "max": float(v.max()) if len(v) else None}
    return out


def main(argv: list[str] | None = None) -> dict:
    from odecam.assets import default_avatar_path
    from odecam.engine.images import to_tensor
    from odecam.engine.mouth import mouth_indices, teeth_mask, mouth_axis
    from odecam.engine.portrait import load_portrait
    from odecam.engine.weights import load_model
    from odecam.evaluation.expression import landmarks68

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stills", type=Path, help="a folder of portraits (e.g. ../shared/data/faces/stills)")
    ap.add_argument("--checkpoint", help="model weights (default: the installed default)")
    ap.add_argument("--json", type=Path, help="write the scores here")
    ap.add_argument("--sheet", type=Path, help="write mouth | teeth found | painted for each portrait here")
    ap.add_argument("--cuts", action="store_true", help="also score the astronaut cut at 32 squares of 150-230 px")
    args = ap.parse_args(argv)

    model = load_model(args.checkpoint).model.eval()
    indices = mouth_indices(tuple(getattr(model, "keypoint_roles", ())))
    if indices is None:
        raise SystemExit("cavity_placement: this checkpoint's keypoints do not name the mouth; use the default.")
    size = model.cfg.image_size
    paths = sorted(p for p in args.stills.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if args.stills else []
    paths.append(default_avatar_path())
    rows, tiles = [], []

    def score(image: np.ndarray) -> tuple[dict | None, np.ndarray | None]:
        """(S, S, 3) RGB -> (score_portrait's dict or None, F_K's four mouth points in pixels)."""
        landmarks = landmarks68(image)
        if landmarks is None:
            return None, None
        with torch.no_grad():
            kp = model.kp_detector(to_tensor(image, size))["value"][0].numpy()
        points = (kp[list(indices)] + 1.0) * 0.5 * (size - 1)
        return score_portrait(image, points, landmarks[60:68]), points

    for path in tqdm(paths, desc="portraits", disable=len(paths) < 5):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                image = load_portrait(path)
            except Exception:  # noqa: BLE001 - an unreadable or faceless file is skipped
                continue
        image = image[0] if isinstance(image, tuple) else image
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        scored, points = score(image)
        if scored is None:
            continue
        painted = scored.pop("_painted")
        rows.append({"portrait": path.name, **scored})
        if args.sheet:
            found = image.copy()
            found[teeth_mask(image, points, mouth_axis(image))] = (0, 255, 0)
            cx, cy = points[:2].mean(0)
            x0, y0 = int(np.clip(cx - 45, 0, size - 90)), int(np.clip(cy - 28, 0, size - 56))
            tiles.append(np.hstack([cv2.resize(a[y0:y0 + 56, x0:x0 + 90], None, fx=3, fy=3,
                                               interpolation=cv2.INTER_NEAREST) for a in (image, found, painted)]))
    result = {"summary": summary(rows), "portraits": rows}
    if args.cuts:
        from odecam.assets import AVATAR_CROP
        from odecam.engine.images import load_image, to_image

        photo, cuts = load_image(default_avatar_path()), []
        cx, cy = AVATAR_CROP.cx + 0.5, AVATAR_CROP.cy + 0.5
        for side in (150, 160, 167, 175, 183, 190, 200, 230):
            for dx, dy in ((0, 0), (0, 6), (6, 0), (0, -6)):
                x0, y0 = max(0, int(cx - side / 2 + dx)), max(0, int(cy - side / 2 + dy))
                scored, _ = score(to_image(to_tensor(photo[y0:y0 + side, x0:x0 + side], size)))
                if scored is not None:
                    scored.pop("_painted")
                    cuts.append({"portrait": f"astronaut cut {side} px at ({x0}, {y0})", **scored})
        result["cuts"] = {"summary": summary(cuts), "portraits": cuts}
    for label, part in (("portraits", result), ("cuts of the astronaut", result.get("cuts"))):
        if part is None:
            continue
        s = part["summary"]
        print(f"{s['portraits']} {label} with teeth painted")
        for key in ("outside", "covered"):
            if s[key]["median"] is not None:
                print(f"  {key:8} median {s[key]['median']:.3f}  mean {s[key]['mean']:.3f}  max {s[key]['max']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    if args.sheet and tiles:
        pairs = [np.hstack(tiles[i:i + 2]) if i + 1 < len(tiles) else np.hstack([tiles[i], np.zeros_like(tiles[i])])
                 for i in range(0, len(tiles), 2)]
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), cv2.cvtColor(np.vstack(pairs), cv2.COLOR_RGB2BGR))
        print(f"wrote {args.sheet}")
    return result


if __name__ == "__main__":
    main()
