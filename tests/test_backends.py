"""Backends: one switch (torch, torchscript, onnxruntime, tensorrt), parity with eager, export folders."""

import numpy as np
import pytest
import torch

from odecam.cli import main
from odecam.config import preset
from odecam.engine import Animator, Avatar
from odecam.engine.images import to_tensor
from odecam.engine.backends import (BACKENDS, BackendError, get_backend, load_backend, onnx_cache_dir,
                                    torch_threads_for)
from odecam.export import export_model
from odecam.model import MotionTransferModel

from conftest import randomize_new_parts

TOL = 1e-4  # fp32 max abs error against eager
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """One ONNX export cache for this module (and never the user's home)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ODECAM_CACHE_DIR", str(tmp_path_factory.mktemp("onnx-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = MotionTransferModel(preset("tiny").replace(num_refs=1)).eval()
    randomize_new_parts(m)
    return m


@pytest.fixture(scope="module")
def media():
    rng = np.random.default_rng(0)
    smooth = lambda: np.clip(rng.normal(128, 60, (9, 9, 3)), 0, 255).astype(np.uint8).repeat(10, 0).repeat(10, 1)
    return {"source": smooth(), "ref": smooth(), "frames": [smooth() for _ in range(4)]}


def _render_all(model, avatar, frames, backend, **kw):
    animator = Animator(model, avatar, backend=backend, **kw)
    outs = []
    for f in frames:
        value, jac = animator.keypoints(f)
        outs.append(animator.render_tensor(value, jac))
    return torch.cat(outs), animator


def _errors(model, media, backend, precision="fp32", device=None):
    avatar = Avatar(model, media["source"], [media["ref"]])
    want, _ = _render_all(model, avatar, media["frames"], "torch")
    b = get_backend(backend, model, device=device, precision=precision)
    got, animator = _render_all(model, avatar, media["frames"], b)
    return float((got.cpu() - want.cpu()).abs().max()), animator


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_cpu_backends_match_eager_fp32(model, media, backend):
    err, animator = _errors(model, media, backend)
    print(f"\n{backend} fp32 max abs error vs eager: {err:.2e}")
    assert err <= TOL
    pct = animator.timings.percentiles()
    assert {"keypoints", "frame"} <= set(pct) and "coarse_motion" not in pct  # compiled: two stages


def test_fp16_error_is_reported(model, media):
    """fp16 is not held to 1e-4; its error is measured and printed (CPU eager here, TensorRT on a GPU)."""
    err, _ = _errors(model, media, "torch", precision="fp16")
    print(f"\ntorch fp16 (CPU) max abs error vs fp32 eager: {err:.2e}")
    assert np.isfinite(err) and err < 0.05


@pytest.mark.skipif(not CUDA, reason="TensorRT needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_eager(model, media, precision):
    pytest.importorskip("torch_tensorrt", exc_type=Exception)
    err, _ = _errors(model, media, "tensorrt", precision=precision)
    print(f"\ntensorrt {precision} max abs error vs eager: {err:.2e}")
    if precision == "fp32":
        assert err <= TOL
    else:
        assert np.isfinite(err)


@pytest.mark.skipif(CUDA, reason="checks the no-CUDA message")
def test_tensorrt_without_cuda_is_one_clear_error(model):
    with pytest.raises(BackendError, match="CUDA GPU") as err:
        get_backend("tensorrt", model)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(CUDA, reason="checks the no-CUDA message")
def test_cuda_graph_without_cuda_is_one_clear_error(model):
    with pytest.raises(BackendError, match="cuda-graph backend needs a CUDA GPU.*use --backend onnxruntime") as err:
        get_backend("cuda-graph", model, precision="fp16")
    assert "\n" not in str(err.value) and get_backend("ORT", model).name == "onnxruntime"


@pytest.mark.skipif(not CUDA, reason="the cuda-graph backend needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_matches_eager(model, media, precision):
    err, animator = _errors(model, media, "cuda-graph", precision=precision, device="cuda")
    print(f"\ncuda-graph {precision} max abs error vs eager: {err:.2e}")
    assert err <= (1e-3 if precision == "fp32" else 1e-2)  # fp32: cuDNN's algorithms, TF32 off by default
    assert {"keypoints", "frame"} <= set(animator.timings.percentiles())


def test_fp16_copy_keeps_the_motion_path_in_fp32(model, media):
    """The fp16 inference copy (cuda-graph's) runs the generator in half and F_K / F_C / F_E in fp32, with the
    BatchNorms folded: on smooth images its frames stay within 1e-2 of fp32 (CPU half kernels here)."""
    from odecam.engine.images import to_tensor
    from odecam.export.precision import half_copy

    half = half_copy(model, torch.float16)
    assert half.kp_detector.kp.weight.dtype == torch.float32 and half.generator.final.weight.dtype == torch.float16
    assert half.generator.dense_motion_network.mask.weight.dtype == torch.float32
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in half.generator.up_blocks.modules())
    avatar = Avatar(model, media["source"], [media["ref"]])
    state = {k: (v.half() if k == "features" else v) for k, v in avatar.state.items()}
    worst = 0.0
    with torch.no_grad():
        for frame in media["frames"]:
            value, _ = Animator(model, avatar).keypoints(frame)
            kp16 = half.kp_detector(to_tensor(frame, model.cfg.image_size))
            want = model.animate(avatar.state, value, num_views=2)["prediction"]
            got = half.animate(state, value, num_views=2)["prediction"]
            assert got.dtype == torch.float32 and kp16["value"].dtype == torch.float32
            worst = max(worst, float((got - want).abs().max()))
    print(f"\nfp16 copy (CPU) max abs error vs fp32: {worst:.2e}")
    assert worst <= 1e-2


def test_unknown_backend_and_precision(model):
    with pytest.raises(BackendError, match=r"unknown backend 'openvino'; choose one of .*torch, torchscript, onnxruntime"):
        get_backend("openvino", model)
    with pytest.raises(BackendError, match="precision"):
        get_backend("torch", model, precision="int8")
    assert get_backend("ORT", model).name == "onnxruntime"  # aliases, any case
    assert set(BACKENDS) == {"torch", "torchscript", "onnxruntime", "tensorrt", "cuda-graph"}
    assert torch_threads_for("onnxruntime") == 1


def test_onnxruntime_builds_one_graph_per_view_count_and_caches(model, media):
    b = get_backend("onnxruntime", model)
    for refs in ([], [media["ref"]]):
        avatar = Avatar(model, media["source"], refs)
        b.prepare(avatar.state)
        image, ok = b.run_frame(avatar.kp_source)
        assert image.shape == (1, 3, 64, 64) and ok
    assert set(b._frame_graphs) == {1, 2}
    assert len(list(onnx_cache_dir().glob("*.onnx"))) >= 2
    again = get_backend("onnxruntime", model)  # same weights: served from the cache
    again.prepare(avatar.state)
    assert torch.equal(again.run_frame(avatar.kp_source)[0], image)


def test_ode_fallback_survives_export(media):
    """NaN from F_E falls back to T~ inside the exported graph too, and is counted."""
    torch.manual_seed(0)
    m = MotionTransferModel(preset("tiny")).eval()
    with torch.no_grad():
        m.generator.evolution.field.out.bias.fill_(float("nan"))
    avatar = Avatar(m, media["source"])
    out, animator = _render_all(m, avatar, media["frames"][:2], get_backend("onnxruntime", m, cache=False))
    assert torch.isfinite(out).all() and animator.ode_fallbacks == 2


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_folder_runs_without_the_model(model, media, tmp_path, fmt):
    export_model(model, tmp_path, fmt)
    b = load_backend(tmp_path)
    assert b.cfg == model.cfg and b.name == {"onnx": "onnxruntime", "torchscript": "torchscript"}[fmt]
    views = torch.rand(1, 2, 3, 64, 64)
    state = b.run_avatar(views)  # the exported avatar graph
    with torch.no_grad():
        want_state = model.prepare_views(views)
    assert (state["features"] - want_state["features"]).abs().max() <= TOL
    b.prepare(state)
    image = torch.rand(1, 3, 64, 64)
    kp, jac = b.run_keypoints(image)
    got, ok = b.run_frame(kp, jac)
    with torch.no_grad():
        kp_want = model.kp_detector(image)["value"]
        want = model.animate(want_state, kp_want, num_views=2)["prediction"]
    assert (kp - kp_want).abs().max() <= TOL and ok
    assert (got - want).abs().max() <= TOL
    one_view = Avatar(model, media["source"])
    with pytest.raises(BackendError, match="re-export with --num-refs 0"):
        b.prepare(one_view.state)


def test_demo_backend_switch(tmp_path, capsys):
    threads = torch.get_num_threads()  # the demo sets torch's threads for its backend: restore them
    try:
        _demo(tmp_path, capsys)
    finally:
        torch.set_num_threads(threads)


def _demo(tmp_path, capsys):
    rc = main(["demo", "--preset", "tiny", "--max-frames", "3", "--backend", "onnxruntime", "-o", str(tmp_path / "d.mp4")])
    out = capsys.readouterr().out
    assert rc == 0 and "backend onnxruntime" in out and "frame=" in out
    assert (tmp_path / "d.mp4").exists()
    rc = main(["demo", "--preset", "tiny", "--backend", "coreml", "-o", str(tmp_path / "e.mp4")])
    assert rc == 2 and "unknown backend 'coreml'" in capsys.readouterr().err


def test_bench_command_writes_json_table_and_plots(tmp_path, capsys):
    import json

    threads = torch.get_num_threads()
    try:
        rc = main(["bench", "--preset", "tiny", "--backend", "torch", "torchscript", "--ode-steps", "1", "2",
                   "--refs", "0", "1", "--frames", "3", "--warmup", "1", "-o", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert rc == 0 and "GFLOP" in out and "p99" in out
    data = json.loads((tmp_path / "results.json").read_text())
    runs = data["runs"]
    assert len(runs) == 2 * 2 * 2 and not [r for r in runs if "error" in r]
    eager = [r for r in runs if r["backend"] == "torch"][0]
    assert {"keypoints", "coarse_motion", "ode", "warp", "appearance", "decoder"} <= set(eager["stages"])
    assert set(eager["stages"]["ode"]) >= {"p50", "p95", "p99"}
    assert eager["gflops"]["per_frame"] > 0 and eager["floor_ms"] > 0 and eager["params"]["total"] > 0
    assert data["conv_throughput"]["best"] > 0 and data["machine"]["cpu"]
    assert all(r["max_abs_err_vs_eager"] <= TOL for r in runs)
    for png in ("stages.png", "fps_vs_steps.png", "fps_vs_refs.png"):
        assert (tmp_path / png).stat().st_size > 1000
    rc = main(["bench", "--backend", "coreml", "-o", str(tmp_path)])
    assert rc == 2 and "unknown backend" in capsys.readouterr().err


def test_bench_spin_option_reaches_onnxruntime(tmp_path, capsys):
    """--spin: 'auto' by default (as the rendering commands run), the bare flag is 'on', 'off' sleeps; recorded and
    named in the device line."""
    import json

    pytest.importorskip("onnxruntime")
    threads = torch.get_num_threads()
    try:
        for flag, want, named in (([], "auto", "spin-waiting when faster"), (["--spin"], True, "spin-waiting"),
                                  (["--spin", "off"], False, None)):
            out = tmp_path / str(want)
            rc = main(["bench", "--preset", "tiny", "--backend", "onnxruntime", "--refs", "0", "--frames", "2",
                       "--warmup", "0", "--threads", "2", "--no-plots", "-o", str(out)] + flag)
            assert rc == 0, capsys.readouterr().err
            run = json.loads((out / "results.json").read_text())["runs"][0]
            assert run["spin"] == want and type(run["spin"]) is type(want)
            assert (named in run["device"]) if named else ("spin" not in run["device"])
            assert ("spin_share" in run) is (want == "auto") and 0.0 <= run.get("spin_share", 0.0) <= 1.0
            assert run["max_abs_err_vs_eager"] <= TOL
    finally:
        torch.set_num_threads(threads)


def test_bench_reports_the_per_frame_speed_targets():
    """lite at 256 px on the CPU: fps p50 against 150 (N=0) and 100 (N=1), and p50 over the run's floor
    against 3, from the fastest CPU backend per N; other sizes and CUDA runs do not count."""
    from odecam.commands.bench import speed_targets, summarize

    def run(n, backend, p50, floor, size=256, device="cpu"):
        return {"preset": "lite", "image_size": size, "num_refs": n, "ode_steps": 4, "backend": backend,
                "device": device, "fps_p50": 1000.0 / p50, "total": {"p50": p50}, "floor_ms": floor}

    runs = [run(0, "torch", 40.0, 3.0), run(0, "onnxruntime", 10.0, 3.0), run(1, "onnxruntime", 15.0, 3.5),
            run(0, "onnxruntime", 5.0, 3.0, size=128), run(1, "cuda-graph", 1.0, 3.5, device="CUDA H200")]
    t = speed_targets(runs)
    assert t["lite256_N0_fps_p50"] == {"value": 100.0, "backend": "onnxruntime", "target": 150.0, "met": False}
    assert t["lite256_N1_fps_p50"]["value"] == pytest.approx(1000 / 15) and not t["lite256_N1_fps_p50"]["met"]
    assert t["lite256_N0_over_floor"]["value"] == pytest.approx(10 / 3) and t["lite256_N0_over_floor"]["at_most"]
    assert not t["lite256_N0_over_floor"]["met"]
    fast = speed_targets([run(0, "onnxruntime", 6.0, 3.0)])
    assert fast["lite256_N0_fps_p50"]["met"] and fast["lite256_N0_over_floor"]["met"]
    assert "lite256_N0_fps_p50" in summarize(runs)["targets"]
    assert speed_targets([run(0, "onnxruntime", 6.0, 3.0, size=128)]) == {}


def test_onnxruntime_pools_the_keypoint_frame_beside_the_graph(model, media):
    """F_K area-pools its input (antialias off): the in-process onnxruntime backend takes the frame pooled by
    OpenCV (to_tensor's pool) and its keypoints graph reads S / 4 pixels; a full-size frame still works, with the
    same keypoints; the keypoints match eager F_K."""
    assert model.kp_detector.area_factor == 4
    b = get_backend("onnxruntime", model)
    assert b.keypoint_pool == 4
    size = model.cfg.image_size
    animator = Animator(model, Avatar(model, media["source"], [media["ref"]]), backend=b)
    assert tuple(animator._input.shape) == (1, 3, size // 4, size // 4)
    assert [tuple(i.shape) for i in b._keypoint_graph().get_inputs()] == [(1, 3, size // 4, size // 4)]
    frame = media["frames"][0]
    pooled, _ = animator.keypoints(frame)
    full, _ = b.run_keypoints(to_tensor(frame, size))
    with torch.no_grad():
        eager = model.kp_detector(to_tensor(frame, size))["value"]
    assert float((pooled - full).abs().max()) <= 1e-6
    assert float((pooled - eager).abs().max()) <= 1e-5


def test_to_tensor_pool_is_the_area_pooled_frame():
    """to_tensor(..., pool=n) = avg_pool2d(to_tensor(...), n) to float rounding, for frames larger, smaller and
    the size of the model's, with and without a reused output tensor."""
    rng = np.random.default_rng(1)
    for shape in [(64, 64, 3), (120, 160, 3), (30, 44, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        want = torch.nn.functional.avg_pool2d(to_tensor(img, 64), 4)
        for out in (None, torch.empty(1, 3, 16, 16)):
            got = to_tensor(img, 64, out=out, pool=4)
            assert got.shape == (1, 3, 16, 16) and float((got - want).abs().max()) <= 1e-6
            if out is not None:
                assert got is out


def test_to_tensor_takes_a_read_only_frame_without_a_warning():
    """A decoder's read-only frame (PyAV, np.frombuffer) converts silently and the tensor owns its memory."""
    import warnings

    frame = np.frombuffer(np.arange(64 * 64 * 3, dtype=np.uint8).tobytes(), np.uint8).reshape(64, 64, 3)
    assert not frame.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_tensor(frame, 64)
    assert t.shape == (1, 3, 64, 64) and float(t[0, 2, 0, 0]) == pytest.approx(2 / 255.0)


def test_bench_source_times_the_eyes_stage_with_a_face(tmp_path, capsys):
    """--source astronaut: the avatar is a face, so the shipped default reads the driver's eyes (its 'eyes'
    stage); without it the avatar is random pixels and nothing is read."""
    import json

    from odecam.assets import DEFAULT_WEIGHTS

    pytest.importorskip("onnxruntime")
    threads = torch.get_num_threads()
    try:
        for flag, avatar, blink in (([], "random", False), (["--source", "astronaut"], "photo", True)):
            out = tmp_path / avatar
            rc = main(["bench", "--checkpoint", str(DEFAULT_WEIGHTS), "--backend", "onnxruntime", "--refs", "0",
                       "--frames", "3", "--warmup", "1", "--threads", "2", "--no-plots", "-o", str(out)] + flag)
            assert rc == 0, capsys.readouterr().err
            run = json.loads((out / "results.json").read_text())["runs"][0]
            assert run["avatar"] == avatar and run["blink"] is blink
            assert ("eyes" in run["stages"]) is blink
    finally:
        torch.set_num_threads(threads)
