"""Tests of odecam.training.datasets (procedural, FOMM layout, stills, errors, corrupt items)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from odecam.training.datasets import (
    AugmentConfig,
    DatasetError,
    ProceduralTalkingObjects,
    StillImageAnimation,
    VideoFolderDataset,
    build_dataset,
    default_still_images,
    read_video,
    skipped_count,
    write_video,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
N = 2  # references in most tests
S = 48  # image size in most tests


def _check_item(item: dict, n: int = N, s: int = S) -> None:
    assert set(item) >= {"source", "driving", "refs"}
    assert item["source"].shape == (3, s, s) and item["driving"].shape == (3, s, s)
    assert item["refs"].shape == (n, 3, s, s)
    for k in ("source", "driving", "refs"):
        v = item[k]
        assert v.dtype == torch.float32
        if v.numel():
            assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Three short procedural videos (T, 64, 64, 3) uint8."""
    gen = ProceduralTalkingObjects(3, 64, 0, seed=11, video_length=12)
    return [gen.render_video(i) for i in range(3)]


# -- procedural ---------------------------------------------------------------------------------


def test_procedural_shapes_and_determinism():
    a = ProceduralTalkingObjects(10, 64, 3, seed=5)
    b = ProceduralTalkingObjects(10, 64, 3, seed=5)
    c = ProceduralTalkingObjects(10, 64, 3, seed=6)
    ia, ib, ic = a[4], b[4], c[4]
    _check_item(ia, 3, 64)
    for k in ia:
        assert torch.equal(ia[k], ib[k]), k
        assert torch.equal(ia[k], a[4][k]), k  # same index twice
    assert not torch.equal(ia["source"], ic["source"])
    assert not torch.equal(ia["source"], a[5]["source"])
    # the frames of one item differ (motion) but less than two identities do
    d_same = (ia["source"] - ia["driving"]).abs().mean()
    d_other = (ia["source"] - a[5]["source"]).abs().mean()
    assert 0 < d_same < d_other
    assert len(a) == 10
    with pytest.raises(IndexError):
        a[10]


def test_procedural_zero_refs_keypoints_and_video():
    ds = ProceduralTalkingObjects(4, 64, 0, seed=1, return_keypoints=True, face_prob=1.0)
    it = ds[0]
    _check_item(it, 0, 64)
    assert it["kp_source"].shape == (7, 2) and it["kp_refs"].shape == (0, 7, 2)
    assert float(it["kp_driving"].abs().max()) <= 1.0
    v = ds.render_video(1, frames=[0, 5, 10])
    assert v.shape == (3, 64, 64, 3) and v.dtype == np.uint8
    with pytest.raises(DatasetError):
        ProceduralTalkingObjects(4, 64, 5, video_length=6)


def test_procedural_looks_like_a_face():
    """A face item: skin-coloured head blob in the middle, dark pupils, a varied picture."""
    ds = ProceduralTalkingObjects(2, 128, 0, seed=3, face_prob=1.0, noise=0.0)
    img = ds[0]["source"]
    assert float(img.std()) > 0.05
    kp = ds.__class__(2, 128, 0, seed=3, face_prob=1.0, noise=0.0, return_keypoints=True)[0]["kp_source"]
    left_eye, right_eye, nose, mouth_l, mouth_r, mouth_c, chin = kp.tolist()
    assert left_eye[0] < right_eye[0]  # eyes side by side
    assert max(left_eye[1], right_eye[1]) < nose[1] < mouth_c[1] < chin[1]  # eyes above nose above mouth
    # the pupil pixels are dark
    px = ((torch.tensor(left_eye) + 1) / 2 * 127).round().long()
    assert float(img[:, px[1], px[0]].mean()) < 0.35


# -- FOMM layout --------------------------------------------------------------------------------


def _write_frames(d: Path, frames: np.ndarray) -> None:
    d.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def test_fomm_layout(tmp_path: Path, clips):
    (tmp_path / "train").mkdir()
    write_video(tmp_path / "train" / "a.mp4", clips[0])
    write_video(tmp_path / "train" / "b.avi", clips[1])
    _write_frames(tmp_path / "train" / "c_frames", clips[2])
    strip = np.concatenate(list(clips[2][:6]), axis=1)  # FOMM strip image: 6 square frames
    cv2.imwrite(str(tmp_path / "train" / "d.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    from PIL import Image

    gif = [Image.fromarray(f) for f in clips[0][:8]]
    gif[0].save(tmp_path / "train" / "f.gif", save_all=True, append_images=gif[1:], duration=40)
    (tmp_path / "test").mkdir()
    write_video(tmp_path / "test" / "e.mp4", clips[2])

    train = VideoFolderDataset(tmp_path, "train", S, N, repeats=3)
    assert len(train.videos) == 5 and len(train) == 15 and not train.rejected
    loader = DataLoader(train, batch_size=4, shuffle=True, num_workers=0)
    batch = next(iter(loader))
    assert batch["source"].shape == (4, 3, S, S) and batch["refs"].shape == (4, N, 3, S, S)
    for i in range(len(train.videos)):
        _check_item(train[i])
    assert train.get_video(3).shape == (6, S, S, 3)  # the strip
    assert train.get_video(4).shape == (8, S, S, 3)  # the gif

    test = VideoFolderDataset(tmp_path, "test", S, N)
    assert [p.name for p in test.videos] == ["e.mp4"] and test.augment is None
    t0, t1 = test[0], test[0]
    assert all(torch.equal(t0[k], t1[k]) for k in t0)  # deterministic test split
    # decoded frames match the source clip (mp4v is lossy: loose tolerance)
    v = test.get_video(0)
    ref = np.stack([cv2.resize(f, (S, S), interpolation=cv2.INTER_AREA) for f in clips[2]])
    assert v.shape == ref.shape and np.abs(v.astype(float) - ref).mean() < 12


def test_simple_folder_and_single_file(tmp_path: Path, clips):
    for i, c in enumerate(clips):
        write_video(tmp_path / f"v{i}.mp4", c)
    ds = VideoFolderDataset(tmp_path, "train", S, N)
    assert len(ds) == 3
    one = VideoFolderDataset(tmp_path / "v1.mp4", "test", S, N)
    assert len(one) == 1
    _check_item(one[0])
    frames_only = tmp_path / "frames"
    _write_frames(frames_only, clips[0])
    assert len(VideoFolderDataset(frames_only, "test", S, N)) == 1  # one video of 12 frames
    strips = tmp_path / "strips"
    strips.mkdir()
    for i, c in enumerate(clips):
        cv2.imwrite(str(strips / f"{i}.png"), cv2.cvtColor(np.concatenate(list(c[:5]), 1), cv2.COLOR_RGB2BGR))
    assert len(VideoFolderDataset(strips, "test", S, N)) == 3  # three strip videos


def test_augmentation_is_consistent_across_frames(tmp_path: Path, clips):
    write_video(tmp_path / "a.mp4", clips[0])
    plain = VideoFolderDataset(tmp_path, "test", S, N, augment=False)
    flip = VideoFolderDataset(tmp_path, "test", S, N,
                              augment=AugmentConfig(flip_prob=1.0, brightness=0, contrast=0, saturation=0, hue=0))
    a, b = plain[0], flip[0]
    for k in ("source", "driving", "refs"):
        assert torch.allclose(a[k].flip(-1), b[k], atol=1e-6)
    jit = VideoFolderDataset(tmp_path, "train", S, N, augment=True)
    _check_item(jit[0])


def test_cache_memory_cap(tmp_path: Path, clips):
    for i, c in enumerate(clips):
        write_video(tmp_path / f"v{i}.mp4", c)
    one_video = 12 * S * S * 3
    ds = VideoFolderDataset(tmp_path, "train", S, N, cache_bytes=int(1.5 * one_video))
    for i in range(3):
        ds[i]
    assert 0 < ds.cache_nbytes <= 1.5 * one_video
    ds[0]
    assert ds.skipped == 0


# -- errors & corrupt data ----------------------------------------------------------------------


def test_empty_and_unreadable(tmp_path: Path):
    with pytest.raises(DatasetError, match="holds no videos"):
        VideoFolderDataset(tmp_path, "train", S, N)
    with pytest.raises(DatasetError, match="does not exist"):
        VideoFolderDataset(tmp_path / "nope", "train", S, N)
    (tmp_path / "junk.mp4").write_bytes(os.urandom(4000))
    with pytest.raises(DatasetError, match="could be read"):
        VideoFolderDataset(tmp_path, "train", S, N)
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="no 'test' folder"):
        VideoFolderDataset(tmp_path, "test", S, N)


def test_short_video(tmp_path: Path, clips):
    write_video(tmp_path / "long.mp4", clips[0])
    write_video(tmp_path / "short.mp4", clips[1][:3])
    with pytest.raises(DatasetError, match=r"short.mp4 has 3 frames .* at least 4"):
        VideoFolderDataset(tmp_path, "train", S, N)
    ds = VideoFolderDataset(tmp_path, "train", S, N, skip_short=True)
    assert [p.name for p in ds.videos] == ["long.mp4"] and len(ds.rejected) == 1
    with pytest.raises(DatasetError, match="shorter than"):
        VideoFolderDataset(tmp_path / "short.mp4", "train", S, N, skip_short=True)


def test_corrupt_file_in_the_middle_is_skipped(tmp_path: Path, clips):
    write_video(tmp_path / "a.mp4", clips[0])
    (tmp_path / "b.mp4").write_bytes(os.urandom(5000))  # not a video at all: dropped at the scan
    write_video(tmp_path / "c.mp4", clips[2])
    ds = VideoFolderDataset(tmp_path, "train", S, N)
    assert [p.name for p in ds.videos] == ["a.mp4", "c.mp4"]
    assert len(ds.rejected) == 1 and ds.rejected[0][0].endswith("b.mp4")
    for i in range(len(ds)):
        _check_item(ds[i])


def test_decode_failure_at_run_time_is_skipped_and_counted(tmp_path: Path, clips):
    write_video(tmp_path / "a.mp4", clips[0])
    bad = tmp_path / "b_frames"
    _write_frames(bad, clips[1])
    (bad / "0005.png").write_bytes(b"\x89PNG garbage" + os.urandom(100))  # passes the scan, fails to decode
    write_video(tmp_path / "c.mp4", clips[2])
    ds = VideoFolderDataset(tmp_path, "test", S, N)
    assert len(ds) == 3 and ds.skipped == 0
    item = ds[1]  # b_frames -> replaced by the next video
    _check_item(item)
    assert ds.skipped == 1 and any("b_frames" in k for k in ds.bad_videos)
    _check_item(ds[1])
    assert ds.skipped == 2  # counted each time an item is replaced
    _check_item(ds[2])
    assert ds.skipped == 2
    # a full validation catches it before training instead
    full = VideoFolderDataset(tmp_path, "train", S, N, validate="full")
    assert len(full.videos) == 2 and len(full.rejected) == 1
    assert skipped_count(ConcatDataset([ds, full])) == 2


# -- real clips -----------------------------------------------------------------------------------


def test_real_clip_trimmed(tmp_path: Path):
    src = SHARED / "WolfgangLanger_Pexels.mp4"
    if not src.is_file():
        pytest.skip("WolfgangLanger_Pexels.mp4 is only in the development checkout")
    frames = read_video(src, 96, max_frames=None)[:40]
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    write_video(tmp_path / "train" / "wolfgang_a.mp4", frames[:20])
    write_video(tmp_path / "test" / "wolfgang_b.mp4", frames[20:])
    ds = VideoFolderDataset(tmp_path, "train", 64, 3)
    it = ds[0]
    _check_item(it, 3, 64)
    assert float(it["source"].std()) > 0.05  # real picture content


def test_megamind_shots():
    src = SHARED / "Megamind.avi"
    if not src.is_file():
        pytest.skip("Megamind.avi is only in the development checkout")
    ds = VideoFolderDataset(src, "train", 32, 3)
    ds[0]
    segs = ds._cache[str(src)].segments
    assert len(segs) >= 3 and 0 not in np.concatenate(segs)  # black frame 0 dropped, cuts split


# -- stills & build_dataset -------------------------------------------------------------------------


def test_still_image_animation():
    assert default_still_images(), "scikit-image's astronaut.png should be installed"
    ds = StillImageAnimation(None, length=5, image_size=64, num_refs=N, seed=2)
    a, b = ds[1], ds[1]
    _check_item(a, N, 64)
    assert all(torch.equal(a[k], b[k]) for k in a)
    d = (a["source"] - a["driving"]).abs().mean()
    assert 0.005 < float(d) < 0.3  # warped, but the same picture
    arr = (np.random.default_rng(0).uniform(0, 1, (80, 100, 3)) * 255).astype(np.uint8)
    _check_item(StillImageAnimation([arr], length=2, image_size=S, num_refs=N)[0])


def test_build_dataset(tmp_path: Path, clips):
    write_video(tmp_path / "clip.mp4", clips[0])
    ds = build_dataset(f"procedural:7+stills+{tmp_path / 'clip.mp4'}", image_size=S, num_refs=N)
    assert isinstance(ds, ConcatDataset) and len(ds.datasets) == 3
    assert len(ds) == 7 + 100 + 1
    for i in (0, 7, len(ds) - 1):
        _check_item(ds[i])
    lst = build_dataset(["procedural:3", str(tmp_path)], image_size=S, num_refs=N)
    assert len(lst) == 4
    test = build_dataset("procedural:3", split="test", image_size=S, num_refs=N)
    train = build_dataset("procedural:3", split="train", image_size=S, num_refs=N)
    assert not torch.equal(test[0]["source"], train[0]["source"])  # different seeds per split
    assert len(build_dataset(f"stills:{tmp_path / 'clip.mp4'}", image_size=S, num_refs=N)) == 800
    with pytest.raises(DatasetError, match="Unknown dataset spec"):
        build_dataset("no-such-thing")
    # the evaluation clip is refused for training
    shutil.copy(tmp_path / "clip.mp4", tmp_path / "carphone_pristine.mp4")
    with pytest.raises(DatasetError, match="evaluation-only"):
        build_dataset(tmp_path / "carphone_pristine.mp4", image_size=S, num_refs=N)
    with pytest.raises(DatasetError, match="evaluation-only"):
        build_dataset(str(tmp_path), image_size=S, num_refs=N)
    assert len(build_dataset(tmp_path / "carphone_pristine.mp4", split="test", image_size=S, num_refs=N)) == 1
