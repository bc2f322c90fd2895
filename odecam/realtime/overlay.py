"""Text overlay for the live preview window: frame rate and per-stage latency."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["OverlayStyle", "format_stats", "draw_stats"]


@dataclass
class OverlayStyle:
    """Look of the overlay.

    Attributes:
        color: BGR text colour.
        shadow: BGR colour of the box behind the text (keeps it readable on any picture).
        shadow_alpha: opacity of that box (0 = none, 1 = solid).
        scale: font scale at a 360-pixel-high frame; scaled with the frame height.
        margin: distance from the top-left corner, in pixels at a 360-pixel-high frame.
    """

    color: tuple[int, int, int] = (80, 255, 80)
    shadow: tuple[int, int, int] = (0, 0, 0)
    shadow_alpha: float = 0.55
    scale: float = 0.45
    margin: int = 6


def format_stats(fps: float | None, stages: Mapping[str, float], total: bool = True) -> list[str]:
    """The overlay lines: ``"29.8 fps"``, then ``"<stage> 12.3 ms"`` per stage, then the total.

    NaN or missing values print as ``"-"``.
    """

    def num(v: float | None, fmt: str) -> str:
        if v is None or not math.isfinite(v):
            return "-".rjust(int(fmt.split(".")[0] or 0))
        return format(v, fmt)

    lines = [] if fps is None else [f"{num(fps, '.1f')} fps"]
    width = max((len(k) for k in stages), default=0)
    for name, ms in stages.items():
        lines.append(f"{name:<{width}} {num(ms, '5.1f')} ms")
    if total and len(stages) > 1:
        finite = [v for v in stages.values() if v is not None and math.isfinite(v)]
        lines.append(f"{'total':<{width}} {num(sum(finite) if finite else None, '5.1f')} ms")
    return lines


def draw_stats(
    frame: np.ndarray,
    fps: float | None,
    stages: Mapping[str, float],
    *,
    style: OverlayStyle | None = None,
    inplace: bool = True,
) -> np.ndarray:
    """Draw FPS and per-stage latency (``{"capture": 1.2, "model": 35.0, ...}`` in ms) on ``frame``.

    Args:
        frame: BGR uint8 image (H, W, 3).
        fps: frames per second to show first (None to leave it out).
        stages: stage name -> milliseconds, drawn in the mapping's order, followed by their total.
        style: colours / size (:class:`OverlayStyle` defaults if None).
        inplace: draw into ``frame`` (default) or into a copy.

    Returns:
        The frame with the overlay.
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"draw_stats expects a BGR uint8 image (H, W, 3), got {frame.dtype} {frame.shape}.")
    style = style or OverlayStyle()
    out = frame if inplace else frame.copy()
    lines = format_stats(fps, stages)
    if not lines:
        return out
    k = out.shape[0] / 360.0
    scale = style.scale * k
    thickness = max(1, int(round(k)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(s, font, scale, thickness) for s in lines]
    line_h = max(h + base for (_, h), base in sizes) + max(2, int(4 * k))
    m = max(1, int(round(style.margin * k)))
    box_w = max(w for (w, _), _ in sizes) + 2 * m
    box_h = line_h * len(lines) + m
    x1, y1 = min(out.shape[1], box_w + m), min(out.shape[0], box_h + m)
    if style.shadow_alpha > 0 and x1 > m and y1 > m:
        roi = out[m:y1, m:x1]
        shade = np.empty_like(roi)
        shade[...] = style.shadow
        cv2.addWeighted(shade, style.shadow_alpha, roi, 1.0 - style.shadow_alpha, 0.0, dst=roi)
    for i, text in enumerate(lines):
        y = m + line_h * (i + 1) - sizes[i][1]
        cv2.putText(out, text, (2 * m, y), font, scale, style.color, thickness, cv2.LINE_AA)
    return out
