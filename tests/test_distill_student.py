"""scripts/distill_student.py: a narrower F_G / F_A learns its teacher's frames on the teacher's own motion."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from odecam.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

from conftest import randomize_new_parts

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "distill_student.py"


@pytest.fixture
def teacher(tmp_path, tiny_model) -> Path:
    randomize_new_parts(tiny_model)
    with torch.no_grad():  # a mask that leaves some pixels to the decoder
        tiny_model.generator.skip_mask.bias.fill_(0.0)
    tiny_model.keypoint_roles = ("mouth_top", "mouth_bottom")
    return save_checkpoint(tiny_model, tmp_path / "teacher.safetensors", extra={"trained_on": "noise"})


def run(teacher: Path, out: Path, steps: int, *extra: str) -> int:
    mod = runpy.run_path(str(SCRIPT))
    return mod["main"](["--teacher", str(teacher), "--data", "procedural", "--pairs", "12", "--held-out", "4",
                        "--steps", str(steps), "--batch", "4", "--lr", "3e-3",
                        "--set", "generator.block_expansion=4", "appearance.hidden=4", "--out", str(out), *extra])


def test_the_student_is_narrower_keeps_the_motion_and_learns_the_teachers_frames(tmp_path, teacher):
    out = tmp_path / "student" / "student.safetensors"
    assert run(teacher, out, 60) == 0
    student = load_checkpoint(out)
    assert student.cfg.generator.block_expansion == 4 and student.cfg.appearance.hidden == 4
    assert student.keypoint_roles == ("mouth_top", "mouth_bottom")
    a, b = load_file(str(teacher)), load_file(str(out))
    motion = [k for k in a if k.startswith(("kp_detector.", "generator.dense_motion_network.", "generator.evolution."))]
    assert motion and all(torch.equal(a[k], b[k]) for k in motion)
    assert b["generator.first.conv.weight"].shape[0] == a["generator.first.conv.weight"].shape[0] // 2
    assert sum(v.numel() for v in b.values()) < sum(v.numel() for v in a.values())
    report = json.loads((out.parent / "distill.json").read_text())
    assert report["psnr"]["frame"] > report["psnr_before"]["frame"] + 1.0  # it learned the teacher's frames
    assert 0 < report["psnr"]["painted_share"] < 1
    assert [s for s, _ in report["loss_curve"]] == [0, 50]


def test_a_stopped_run_resumes_from_its_partial_save(tmp_path, teacher):
    out = tmp_path / "student.safetensors"
    assert run(teacher, out, 4, "--save-every", "2") == 0
    partial = tmp_path / "student.safetensors.partial.pt"
    assert int(torch.load(partial, weights_only=True)["step"]) == 4
    assert run(teacher, out, 6, "--save-every", "2") == 0  # continues at step 4, not from scratch
    assert int(torch.load(partial, weights_only=True)["step"]) == 6
    assert "psnr_before" not in json.loads((tmp_path / "distill.json").read_text())


def test_only_f_g_and_f_a_sizes_may_change(tmp_path, teacher):
    with pytest.raises(SystemExit, match="keypoints.num_kp"):
        run(teacher, tmp_path / "s.safetensors", 1, "--set", "keypoints.num_kp=4")


def test_a_fine_tune_stage_starts_from_the_earlier_student(tmp_path, teacher):
    first = tmp_path / "a" / "student.safetensors"
    assert run(teacher, first, 30) == 0
    before = json.loads((first.parent / "distill.json").read_text())["psnr"]["frame"]
    second = tmp_path / "b" / "student.safetensors"
    assert run(teacher, second, 0, "--init", str(first)) == 0  # no steps: the earlier student, unchanged
    report = json.loads((second.parent / "distill.json").read_text())
    assert report["init"] == str(first)
    assert report["psnr_before"]["frame"] == pytest.approx(before, abs=1e-6)
    a, b = load_file(str(first)), load_file(str(second))
    assert all(torch.equal(a[k], b[k]) for k in a)
    trained_on = read_checkpoint(second)[2]["trained_on"]
    assert trained_on.startswith(read_checkpoint(first)[2]["trained_on"]) and "--init" in trained_on
    with pytest.raises(SystemExit, match="--init"):  # another student's sizes are refused
        run(teacher, tmp_path / "c.safetensors", 1, "--init", str(first), "--set", "generator.block_expansion=8")


def test_open_share_records_pairs_where_the_driver_opens_the_mouth(tmp_path, teacher):
    mod = runpy.run_path(str(SCRIPT))
    from odecam.training.datasets import build_dataset

    model = load_checkpoint(teacher).eval()
    data = build_dataset("procedural", image_size=model.cfg.image_size, num_refs=1, seed=0)

    class Mouths:  # procedural items with 68 landmarks; in every third one the inner lips are apart
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            item = dict(data[i])
            pts = torch.zeros(68, 2)
            pts[45, 0] = 100.0  # eye corners 100 px apart
            opened = i % 3 == 0
            pts[[65, 66, 67], 1] = 30.0 if opened else 5.0  # inner-lip gap 0.3 or 0.05 of that
            item["driving_landmarks"] = pts
            item["driving"] = torch.full_like(item["driving"], 0.75 if opened else 0.25)  # to tell them apart
            return item

    assert mod["mouth_opening"](Mouths()[0]["driving_landmarks"]) == pytest.approx(0.3)
    assert mod["mouth_opening"](torch.full((68, 2), float("nan"))) == 0.0
    count = lambda recs: sum(float(r["driving"].float().mean()) > 0.5 for r in recs)
    plain = mod["record"](model, Mouths(), 9, 0)
    biased = mod["record"](model, Mouths(), 9, 0, open_share=2 / 3)
    assert len(plain) == len(biased) == 9
    assert count(biased) >= 6 > count(plain)  # as they come about a third are open; two thirds were asked for
    assert count(mod["record"](model, Mouths(), 9, 0, open_share=1.0)) == 9
    none_open = mod["record"](model, Mouths(), 9, 0, open_share=0.5, open_min=10.0)  # no candidate qualifies
    assert len(none_open) == 5  # the plain quota only: fewer pairs than asked, and it says so
