"""scripts/distill_head.py: a trained model gets the pixel-shuffle head, fitted to its own output."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from odecam.checkpoint import load_checkpoint, save_checkpoint

from conftest import randomize_new_parts

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "distill_head.py"


def _teacher(model, tmp_path: Path) -> Path:
    """The model with random new parts and a mask that leaves some pixels to the decoder, saved as a teacher."""
    randomize_new_parts(model)
    with torch.no_grad():
        model.generator.skip_mask.bias.fill_(0.0)
    model.keypoint_roles = ("mouth_top", "mouth_bottom")
    return save_checkpoint(model, tmp_path / "teacher.safetensors", extra={"trained_on": "noise"})


def _distill(teacher: Path, out: Path, *options: str) -> None:
    """scripts/distill_head.py on 12 + 4 procedural pairs, 40 steps."""
    mod = runpy.run_path(str(SCRIPT))
    assert mod["main"](["--teacher", str(teacher), "--data", "procedural", "--pairs", "12", "--held-out", "4",
                        "--steps", "40", "--out", str(out), *options]) == 0


@pytest.mark.parametrize("factor,kernel,up", [(2, 3, True), (4, 1, False)])
def test_the_student_keeps_every_other_weight_and_matches_its_teacher(tmp_path, tiny_model, factor, kernel, up):
    teacher = _teacher(tiny_model, tmp_path)
    out = tmp_path / "student" / "student.safetensors"
    _distill(teacher, out, "--factor", str(factor), "--kernel", str(kernel), *(["--train-up-block"] if up else []))
    student = load_checkpoint(out)
    assert student.cfg.generator.final_kernel == kernel and student.generator.final.kernel_size == (kernel, kernel)
    assert student.cfg.generator.pixel_shuffle == factor and student.keypoint_roles == tiny_model.keypoint_roles
    ups = len(tiny_model.generator.up_blocks)
    assert len(student.generator.up_blocks) == ups - factor // 2
    a, b = load_file(str(teacher)), load_file(str(out))
    trained = ups - factor // 2 - (1 if up else 0)  # the first up-block that may differ from the teacher's
    head = ("generator.final", "generator.skip_mask") + tuple(f"generator.up_blocks.{i}" for i in range(trained, ups))
    for k, v in a.items():
        if not k.startswith(head):
            assert torch.equal(v, b[k]), k
    if up:  # the feeding up-block learned; its batch-norm statistics did not move
        key = f"generator.up_blocks.{trained}"
        assert not torch.equal(a[f"{key}.conv.weight"], b[f"{key}.conv.weight"])
        assert torch.equal(a[f"{key}.norm.running_mean"], b[f"{key}.norm.running_mean"])
    report = json.loads((out.parent / "distill.json").read_text())
    # the least-squares start is already close to the teacher's frames; training keeps it there
    assert report["psnr_before"]["frame"] > 30 and report["psnr_after"]["frame"] > 30
    assert 0 < report["psnr_before"]["painted_share"] < 1
    assert len(report["loss_curve"]) == 1 and report["loss_curve"][0][1] > 0


def test_a_teacher_with_the_shuffle_head_gets_a_new_head_on_the_same_input(tmp_path, tiny_model):
    """--kernel 1 for a teacher that has the 3x3 pixel-shuffle head: only the head and (with --train-up-block) the
    up-block feeding it change; the least-squares start reproduces the teacher's frames closely."""
    from odecam.model import MotionTransferModel

    teacher_model = MotionTransferModel(tiny_model.cfg.replace(**{"generator.pixel_shuffle": 2,
                                                                   "generator.final_kernel": 3})).eval()
    teacher = _teacher(teacher_model, tmp_path)
    out = tmp_path / "student" / "student.safetensors"
    _distill(teacher, out, "--kernel", "1", "--train-up-block")
    student = load_checkpoint(out)
    assert student.cfg.generator.pixel_shuffle == 2 and student.generator.final.kernel_size == (1, 1)
    assert len(student.generator.up_blocks) == len(teacher_model.generator.up_blocks)
    a, b = load_file(str(teacher)), load_file(str(out))
    last = f"generator.up_blocks.{len(teacher_model.generator.up_blocks) - 1}"
    for k, v in a.items():
        if not k.startswith(("generator.final", "generator.skip_mask", last)):
            assert torch.equal(v, b[k]), k
    assert not torch.equal(a[f"{last}.conv.weight"], b[f"{last}.conv.weight"])
    report = json.loads((out.parent / "distill.json").read_text())
    assert report["psnr_before"]["frame"] > 30 and report["psnr_after"]["frame"] > 30
