"""Export: the three graphs in ONNX and TorchScript, their metadata, parity with eager, CLI mistakes."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odecam.cli import main
from odecam.config import preset
from odecam.export import FORMAT_VERSION, ExportError, export_model, read_manifest, read_metadata
from odecam.export.graphs import AvatarGraph, FrameGraph, KeypointGraph, example_inputs
from odecam.model import MotionTransferModel
from odecam.model.geometry import gather_warp, inverse_2x2, warp, warp_gather

from conftest import randomize_new_parts

TOL = 1e-4  # fp32 max abs error against eager


def _model(cfg) -> MotionTransferModel:
    torch.manual_seed(0)
    model = MotionTransferModel(cfg).eval()
    randomize_new_parts(model)
    return model


@pytest.fixture(scope="module")
def tiny_refs():
    return _model(preset("tiny").replace(num_refs=1))


@pytest.fixture(scope="module")
def onnx_dir(tiny_refs, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    export_model(tiny_refs, out, "onnx")
    return out


@pytest.fixture(scope="module")
def ts_dir(tiny_refs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ts")
    export_model(tiny_refs, out, "torchscript")
    return out


def _eager(model, num_views=None):
    ex = example_inputs(model, num_views, seed=1)
    with torch.no_grad():
        ref = {"avatar": AvatarGraph(model)(*ex["avatar"]), "keypoints": KeypointGraph(model)(*ex["keypoints"]),
               "frame": FrameGraph(model, num_views)(*ex["frame"])}
    return ex, ref


def _ort_run(path, args):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)})


def test_onnx_graphs_match_eager_and_carry_config(tiny_refs, onnx_dir):
    ex, ref = _eager(tiny_refs)
    for graph in ("avatar", "keypoints", "frame"):
        outs = _ort_run(onnx_dir / f"{graph}.onnx", ex[graph])
        assert len(outs) == len(ref[graph])
        for got, want in zip(outs, ref[graph]):
            if want.dtype == torch.bool:
                assert bool(got) == bool(want)
            else:
                assert np.abs(got - want.numpy()).max() <= TOL, graph
        meta = read_metadata(onnx_dir / f"{graph}.onnx")
        assert meta["graph"] == graph and meta["format_version"] == FORMAT_VERSION
        assert meta["config"] == tiny_refs.cfg and meta["num_views"] == 2 and meta["ode_steps"] == 2
    manifest = read_manifest(onnx_dir)
    assert manifest["format"] == "onnx" and manifest["config"] == tiny_refs.cfg
    assert set(manifest["graphs"]) == {"avatar", "keypoints", "frame"}


def test_onnx_frame_graph_serves_any_avatar(tiny_refs, onnx_dir):
    """The avatar state is an input, not a constant: two avatars through one exported graph."""
    for seed in (2, 3):
        ex = example_inputs(tiny_refs, seed=seed)
        with torch.no_grad():
            want = FrameGraph(tiny_refs)(*ex["frame"])[0]
        got = _ort_run(onnx_dir / "frame.onnx", ex["frame"])[0]
        assert np.abs(got - want.numpy()).max() <= TOL


def test_torchscript_graphs_match_eager_and_carry_config(tiny_refs, ts_dir):
    from odecam.export.torchscript import load_torchscript

    ex, ref = _eager(tiny_refs)
    for graph in ("avatar", "keypoints", "frame"):
        module = load_torchscript(ts_dir / f"{graph}.pt")
        with torch.no_grad():
            outs = module(*ex[graph])
        for got, want in zip(outs, ref[graph]):
            assert (got.float() - want.float()).abs().max() <= TOL, graph
        meta = read_metadata(ts_dir / f"{graph}.pt")
        assert meta["format"] == "torchscript" and meta["config"] == tiny_refs.cfg


def test_first_order_with_jacobians_exports_to_onnx(tmp_path):
    """vox256's path (first-order motion, jacobian inputs; the 2x2 inverse in closed form), at tiny size."""
    cfg = preset("tiny").replace(**{"keypoints.estimate_jacobian": True, "motion.mode": "first_order"})
    model = _model(cfg)
    with torch.no_grad():  # jacobians away from identity
        model.kp_detector.jacobian.weight.normal_(0, 0.05)
    export_model(model, tmp_path, "onnx", graphs=("keypoints", "frame"))
    ex, ref = _eager(model)
    assert len(ex["frame"]) == 8  # kp, jac, features, kp_view, jac_view, image_small, heat_view, view_image
    for graph in ("keypoints", "frame"):
        outs = _ort_run(tmp_path / f"{graph}.onnx", ex[graph])
        assert np.abs(outs[0] - ref[graph][0].numpy()).max() <= TOL
    assert not (tmp_path / "avatar.onnx").exists()


@pytest.mark.parametrize("shuffle", [1, 2])
def test_lite_frame_graph_onnx_parity(tmp_path, shuffle):
    model = _model(preset("lite").replace(**{"generator.pixel_shuffle": shuffle}))
    export_model(model, tmp_path, "onnx", graphs=("frame",))
    ex = example_inputs(model, seed=1)["frame"]
    with torch.no_grad():
        want = FrameGraph(model)(*ex)[0]
    got = _ort_run(tmp_path / "frame.onnx", ex)[0]
    assert got.shape == (1, 3, 256, 256)
    assert np.abs(got - want.numpy()).max() <= TOL


def test_ode_steps_and_views_are_baked_in(tiny_refs, tmp_path):
    export_model(tiny_refs, tmp_path, "torchscript", num_views=3, ode_steps=3, graphs=("frame",))
    meta = read_metadata(tmp_path / "frame.pt")
    assert meta["num_views"] == 3 and meta["ode_steps"] == 3
    from odecam.export.torchscript import load_torchscript

    ex = example_inputs(tiny_refs, num_views=3, seed=4)["frame"]
    with torch.no_grad():
        want = FrameGraph(tiny_refs, 3, 3)(*ex)[0]
        other = FrameGraph(tiny_refs, 3, 1)(*ex)[0]
        got = load_torchscript(tmp_path / "frame.pt")(*ex)[0]
    assert (got - want).abs().max() <= TOL
    assert (other - want).abs().max() > TOL  # the step count matters, so it really is the 3-step graph


def test_metadata_refuses_other_format_versions(tiny_refs, onnx_dir, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_dir / "keypoints.onnx"))
    for p in proto.metadata_props:
        if p.key == "odecam_format_version":
            p.value = str(FORMAT_VERSION + 1)
    onnx.save(proto, str(tmp_path / "future.onnx"))
    with pytest.raises(ExportError, match="re-export"):
        read_metadata(tmp_path / "future.onnx")
    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    manifest["odecam_format_version"] = 0
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="format 0"):
        read_manifest(tmp_path)
    with pytest.raises(ExportError, match="not an odecam export folder"):
        read_manifest(tmp_path / "nowhere")


def test_gather_warp_equals_grid_sample():
    torch.manual_seed(0)
    features = torch.randn(2, 16, 12, 10)
    grid = torch.rand(2, 9, 7, 2) * 2.4 - 1.2  # some samples outside: zero padding
    grid[0, 0, 0] = torch.tensor([1.0, 1.0])  # exact corners
    grid[0, 0, 1] = torch.tensor([-1.0, -1.0])
    want = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    assert (warp_gather(features, grid) - want).abs().max() < 1e-5
    assert torch.equal(warp(features, grid), want)  # eager never gathers
    with gather_warp():
        assert (warp(features, grid) - want).abs().max() < 1e-5
        assert torch.equal(warp(features[:, :3], grid), want[:, :3])  # few channels keep grid_sample


def test_closed_form_inverse_2x2():
    m = torch.randn(50, 2, 2) + 2 * torch.eye(2)
    assert torch.allclose(inverse_2x2(m), torch.inverse(m), atol=1e-5)


def test_export_refuses_bad_arguments(tiny_refs, tmp_path):
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(tiny_refs, tmp_path, "coreml")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_model(tiny_refs, tmp_path / "file", "onnx")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_tensorrt_without_cuda_is_one_sentence(tiny_refs, tmp_path):
    with pytest.raises(ExportError, match="CUDA GPU") as err:
        export_model(tiny_refs, tmp_path, "tensorrt")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("args,match", [
    (["--format", "coreml"], "unknown export format 'coreml'"),
    (["--checkpoint", "missing.safetensors"], "does not exist"),
] + ([] if torch.cuda.is_available() else [(["--format", "tensorrt"], "CUDA GPU")]))
def test_cli_export_mistakes_exit_2_with_one_sentence(tmp_path, capsys, args, match):
    rc = main(["export", "--preset", "tiny", "-o", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_cli_export_torchscript_with_check(tmp_path, capsys):
    rc = main(["export", "--preset", "tiny", "--format", "torchscript", "-o", str(tmp_path / "ts"), "--check"])
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "ts" / "frame.pt").exists() and (tmp_path / "ts" / "manifest.json").exists()
    err = float(out.split("max abs error")[1].split()[0])
    assert err <= TOL


def test_export_leaves_eager_untouched(tmp_path):
    """Exporting traces with fake tensors; nothing of that may leak into caches that eager calls use."""
    from odecam.model import geometry

    geometry._GRIDS.clear()  # the frame graph's grids are first created while exporting
    model = _model(preset("tiny"))
    export_model(model, tmp_path, "onnx", graphs=("frame",))
    ex = example_inputs(model, seed=5)["frame"]
    with torch.no_grad():
        out = FrameGraph(model)(*ex)[0]
    assert 0.0 <= float(out.min()) <= float(out.max()) <= 1.0
    from torch._subclasses.fake_tensor import is_fake

    assert not any(is_fake(g) for g in geometry._GRIDS.values())
