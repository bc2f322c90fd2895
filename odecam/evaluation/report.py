"""The printed report of ``odecam eval``: markdown tables whose every "—" is explained.

:func:`markdown_table` takes {row name: :class:`~odecam.evaluation.protocols.EvalResult`} and returns

1. the paper's metrics (L1, PSNR, SSIM, MS-SSIM, FID, AKD, CSIM), one row per method;
2. expression and head-pose transfer (face rate, frames with both faces, Pearson r of the mouth, eyes,
   roll, yaw and pitch signals, and the avatar's motion range over the driver's) when scored;
3. numbered footnotes: a "—ⁿ" cell points at the sentence saying why the metric does not apply;
4. per row, how many frame pairs AKD, CSIM and the expression signals measured and skipped.
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["markdown_table"]

_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_PAPER = (("l1", "L1 ↓", "{:.4f}"), ("psnr", "PSNR ↑", "{:.2f}"), ("ssim", "SSIM ↑", "{:.3f}"),
          ("ms_ssim", "MS-SSIM ↑", "{:.3f}"), ("fid", "FID ↓", "{:.1f}"), ("akd", "AKD ↓", "{:.2f}"),
          ("csim", "CSIM ↑", "{:.3f}"))
_SIGNALS = ("mouth", "eyes", "roll", "yaw", "pitch")


class _Footnotes:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def cell(self, value, fmt: str, why: str | None) -> str:
        if value is not None:
            return fmt.format(value)
        if not why:
            return "—"
        if why not in self.texts:
            self.texts.append(why)
        return "—" + str(self.texts.index(why) + 1).translate(_SUP)

    def lines(self) -> list[str]:
        return [f"{str(i + 1).translate(_SUP)} {t}." for i, t in enumerate(self.texts)]


def markdown_table(rows: Mapping[str, object]) -> str:
    """Markdown tables of the :class:`EvalResult` rows, with footnotes and face-pair counts."""
    notes = _Footnotes()
    head = "| method | frames | " + " | ".join(h for _, h, _ in _PAPER) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(_PAPER)]
    for name, r in rows.items():
        cells = [notes.cell(r.metrics.get(k), fmt, r.notes.get(k)) for k, _, fmt in _PAPER]
        lines.append(f"| {name} | {r.frames} | " + " | ".join(cells) + " |")

    scored = {name: r for name, r in rows.items() if r.expression is not None}
    if scored:
        lines += ["", "Expression and head-pose transfer (dlib 68 landmarks; r: Pearson correlation of the "
                  "avatar's signal with the driver's; range: the avatar's std over the driver's):", "",
                  "| method | face rate ↑ | both faces | " + " | ".join(f"{s} r ↑" for s in _SIGNALS) + " | "
                  + " | ".join(f"{s} range" for s in _SIGNALS) + " |",
                  "|---|---:|---:|" + "---:|" * (2 * len(_SIGNALS))]
        for name, r in scored.items():
            e = r.expression
            cells = [notes.cell(e.get("face_rate"), "{:.0%}", r.notes.get("face_rate")),
                     f"{e.get('expression_pairs', 0)}/{e.get('expression_frames', 0)}"]
            cells += [notes.cell(e.get(f"{s}_corr"), "{:.2f}", r.notes.get(f"{s}_corr")) for s in _SIGNALS]
            rng = e.get("motion_range") or {}
            cells += [notes.cell(rng.get(s), "{:.2f}", r.notes.get(f"motion_range.{s}")) for s in _SIGNALS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    unscored = sorted({r.notes["expression"] for r in rows.values() if r.expression is None and "expression" in r.notes})
    if unscored:
        lines += ["", "Expression and head-pose transfer: not scored: " + "; ".join(unscored) + "."]

    if notes.texts:
        lines += [""] + notes.lines()
    counts = []
    for name, r in rows.items():
        parts = []
        for key, label in (("akd", "AKD"), ("csim", "CSIM")):
            if f"{key}_pairs" in r.extra:
                parts.append(f"{label} {r.extra[f'{key}_pairs']} measured, {r.extra[f'{key}_skipped']} skipped")
        if r.expression is not None:
            e = r.expression
            parts.append(f"expression {e['expression_pairs']} measured, "
                         f"{e['expression_frames'] - e['expression_pairs']} skipped (driver face in "
                         f"{e['driver_faces']}, avatar face in {e['avatar_faces']} of {e['expression_frames']} frames)")
        if parts:
            counts.append(f"- {name}: " + "; ".join(parts))
    if counts:
        lines += ["", "Frame pairs measured / skipped (skipped: no face found in one of the two images):"] + counts
    return "\n".join(lines)
