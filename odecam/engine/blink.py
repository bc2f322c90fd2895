"""Blink retargeting: the avatar closes its eyes when the driver does.

F_C and F_E never learned to close an eyelid, and F_K (64 px) cannot see one (EVALUATION.md), so blinks are
carried beside the motion, the way LivePortrait retargets eye openness:

1. once per avatar, :func:`closed_eye_views` closes every view's eyes (the upper lid slid down over the eye
   between dlib's 5-point eye corners, a public-domain model) and :func:`closed_eye_state` caches the encoder
   features F_S and F_C's view images of those pictures, with the open avatar's keypoints (same motion);
2. per driving frame, :class:`EyeReader` reads the driver's eye openness from two crops of the full-resolution
   frame placed by F_K's upper-eyelid keypoints (:class:`odecam.model.eye_openness.EyeOpennessNet`, 8.9 k
   weights in onnxruntime, about 0.1 ms), and :class:`BlinkTracker` turns it into a blink amount b in [0, 1]
   against the driver's own running median (faces and cameras differ; a ratio does not care);
3. the backend renders from the avatar state lerp(open, closed, b) (``Backend.blend_views``): nothing is
   recomputed, the open and closed features are blended where the frame graph reads them.

Both eyes close together (one amount: a wink is not followed). A keypoint stream carries no frame, so its
receiver sets the amount itself (``Animator.set_blink``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from odecam.checkpoint import role_indices
from odecam.model.eye_openness import EYE_CROP, EyeOpennessNet, eye_crops

log = logging.getLogger(__name__)

EYE_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "eye_openness.safetensors"
#: the roles of F_K's keypoints the eye crops are placed by
EYELID_ROLES = ("upper_eyelid_right", "upper_eyelid_left")
#: openness at or above OPEN_RATIO x the driver's running median: eyes open (b = 0); at or below CLOSED_RATIO: shut
OPEN_RATIO = 0.8
CLOSED_RATIO = 0.62
#: the running median's window and the readings needed before any blink is shown
MEDIAN_FRAMES = 150
WARMUP_FRAMES = 15
#: b is rounded to steps of 1 / BLEND_STEPS (a backend re-blends the avatar only when b changes)
BLEND_STEPS = 8


def eyelid_indices(roles: tuple[str, ...]) -> tuple[int, int] | None:
    """Indices of the two upper-eyelid keypoints among a model's keypoint roles, or None."""
    return role_indices(roles, EYELID_ROLES)


# -- the driver's side ----------------------------------------------------------------------------------
def _eye_net_onnx(net: EyeOpennessNet) -> bytes:
    """:class:`EyeOpennessNet` as an ONNX graph written node by node (no exporter: it is eight layers)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    sd = {k: v.detach().float().numpy() for k, v in net.state_dict().items()}
    inits = [numpy_helper.from_array(v, k) for k, v in sd.items()]
    inits.append(numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"))
    conv = lambda i, x, y: helper.make_node("Conv", [x, f"body.{i}.weight", f"body.{i}.bias"], [y],  # noqa: E731
                                            kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    pool = lambda x, y: helper.make_node("MaxPool", [x], [y], kernel_shape=[2, 2], strides=[2, 2])  # noqa: E731
    nodes = [
        helper.make_node("ReduceMean", ["crops"], ["mean"], axes=[2, 3], keepdims=1),
        helper.make_node("Sub", ["crops", "mean"], ["x0"]),
        conv(0, "x0", "c0"), helper.make_node("Relu", ["c0"], ["r0"]), pool("r0", "p0"),
        conv(3, "p0", "c1"), helper.make_node("Relu", ["c1"], ["r1"]), pool("r1", "p1"),
        conv(6, "p1", "c2"), helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Reshape", ["r2", "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "head.weight", "head.bias"], ["out"], transB=1),
        helper.make_node("Flatten", ["out"], ["openness"], axis=0),
    ]
    graph = helper.make_graph(nodes, "eye_openness", [
        helper.make_tensor_value_info("crops", TensorProto.FLOAT, [2, 1, EYE_CROP[1], EYE_CROP[0]])],
        [helper.make_tensor_value_info("openness", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def eye_net_onnx_cached(net: EyeOpennessNet, rebuild: bool = False) -> bytes:
    """:func:`_eye_net_onnx`, cached on disk beside the backends' ONNX exports
    (:func:`odecam.engine.ort_backend.onnx_cache_dir`), keyed by the weights and this module's code: a warm start
    reads the bytes and never imports ``onnx`` (0.8 s of every command's start-up, most of it ``ml_dtypes``).
    ``rebuild``: write the graph again (the cached file did not load). A read-only cache folder just builds."""
    from odecam.engine.ort_backend import onnx_cache_dir

    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name, value in net.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    path = onnx_cache_dir() / f"eye-openness-{digest.hexdigest()[:32]}.onnx"
    if not rebuild:
        try:
            return path.read_bytes()
        except OSError:
            pass
    data = _eye_net_onnx(net)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        log.debug("could not cache the eye network's graph in %s (%s)", path.parent, exc)
    return data


def load_eye_net(path: str | Path = EYE_WEIGHTS) -> EyeOpennessNet:
    """The shipped eye-openness network (safetensors; nothing is unpickled)."""
    from safetensors.torch import load_file

    net = EyeOpennessNet()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


class EyeReader:
    """Driving frame (H, W, 3) uint8 RGB and its raw F_K keypoints -> the mean openness of the two eyes.

    Runs :class:`EyeOpennessNet` in a one-thread onnxruntime session that never spins (it sits beside the
    frame graph's threads). The crop buffers are reused from frame to frame."""

    def __init__(self, lids: tuple[int, int], net: EyeOpennessNet | None = None) -> None:
        import onnxruntime as ort

        net = net or load_eye_net()
        self.lids = list(lids)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(eye_net_onnx_cached(net), so, providers=["CPUExecutionProvider"])
        except Exception:  # a damaged cache file: build the graph again
            self.session = ort.InferenceSession(eye_net_onnx_cached(net, rebuild=True), so,
                                                providers=["CPUExecutionProvider"])
        self._crops = np.empty((2, 1, EYE_CROP[1], EYE_CROP[0]), np.float32)
        self._scratch = (np.empty((EYE_CROP[1], EYE_CROP[0], 3), np.uint8),  # an eye's crop and its grey
                         np.empty((EYE_CROP[1], EYE_CROP[0]), np.uint8))
        self._px = np.empty((2, 2), np.float64)

    def __call__(self, frame: np.ndarray, kp: torch.Tensor) -> float:
        """``frame`` (H, W, 3) uint8 RGB; ``kp`` (1, K, 2) F_K's keypoints of that frame in [-1, 1]."""
        h, w = frame.shape[:2]
        pts = kp.detach().cpu().numpy()[0]  # the backends' keypoints are CPU tensors over NumPy arrays: no copy
        for e, k in enumerate(self.lids):
            self._px[e, 0] = (pts[k, 0] + 1.0) * 0.5 * (w - 1)
            self._px[e, 1] = (pts[k, 1] + 1.0) * 0.5 * (h - 1)
        if not np.isfinite(self._px).all():
            return float("nan")
        eye_crops(frame, self._px, out=self._crops[:, 0], scratch=self._scratch)
        return float(self.session.run(None, {"crops": self._crops})[0].mean())


class BlinkTracker:
    """Eye openness readings -> blink amount b in [0, 1] against the driver's running median.

    b = 0 at or above ``open_ratio`` x median, 1 at or below ``closed_ratio`` x median, linear between, rounded
    to steps of 1 / :data:`BLEND_STEPS`; 0 for the first ``warmup`` readings (no median yet). The median is
    recomputed every ``refresh`` readings (it moves slowly; a median of 150 values costs 0.1 ms on the hot path)."""

    def __init__(self, window: int = MEDIAN_FRAMES, warmup: int = WARMUP_FRAMES, open_ratio: float = OPEN_RATIO,
                 closed_ratio: float = CLOSED_RATIO, refresh: int = 10) -> None:
        if not 0.0 < closed_ratio < open_ratio:
            raise ValueError(f"need 0 < closed_ratio < open_ratio, got {closed_ratio} and {open_ratio}")
        self.open_ratio, self.closed_ratio = open_ratio, closed_ratio
        self.warmup = max(1, min(warmup, window))
        self.refresh = max(1, refresh)
        self._history = np.zeros(window, np.float64)
        self._n = 0
        self._median: float | None = None

    def reset(self) -> None:
        self._n = 0
        self._median = None

    @property
    def median(self) -> float | None:
        """The running median the last readings gave (None before ``warmup`` readings)."""
        return self._median

    def update(self, openness: float) -> float:
        if not math.isfinite(openness):
            return 0.0
        self._history[self._n % len(self._history)] = openness
        self._n += 1
        n = min(self._n, len(self._history))
        if n >= self.warmup and (self._median is None or self._n % self.refresh == 0):
            self._median = float(np.median(self._history[:n]))
        median = self._median
        if median is None or median <= 0.0:
            return 0.0
        ratio = openness / median
        b = (self.open_ratio - ratio) / (self.open_ratio - self.closed_ratio)
        return round(min(1.0, max(0.0, b)) * BLEND_STEPS) / BLEND_STEPS


# -- the avatar's side ----------------------------------------------------------------------------------
#: the skin this far above the upper lid (in eye widths) slides down with it; beyond, nothing moves
BROW_MARGIN = 0.25
#: an open upper lid's height above the corner line, in eye widths (F_K's eyelid keypoint on a still is too rough)
LID_HEIGHT = 0.22
#: a closed lid rests this far down towards the lower lid (its share of the lower lid's depth below the corners)
LID_REST = 0.7


def close_eyes(image: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Close both eyes the way a blink does: the upper lid and the skin above it slide down to the lower lid.

    ``image`` (S, S, 3) uint8 RGB; eye corners (2, 2, 2) px ([eye][corner], as
    :func:`odecam.realtime.face_detection.eye_corners`) -> a new image. In each eye's frame (s along the
    corner line from its centre, t down the face) the column at s maps [top, L(s)] of the new picture onto
    [top, U(s)] of the old: U(s) = -up g(s) the upper lid (up = LID_HEIGHT width), L(s) = LID_REST down g(s)
    where the lid comes to rest, g(s) = sqrt(1 - (s / half)^2), top = -(up + BROW_MARGIN width). The lid's own
    lashes end on the lower lid, the iris is covered by lid skin, and nothing moves above the brow margin, below
    the lid or beside the eye."""
    h, w = image.shape[:2]
    map_x, map_y = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    src_x, src_y = map_x.copy(), map_y.copy()
    for e in range(2):
        c0, c1 = np.asarray(corners[e], np.float64)
        if c1[0] < c0[0]:
            c0, c1 = c1, c0
        width = float(np.linalg.norm(c1 - c0))
        if width < 2.0:
            continue
        u = (c1 - c0) / width
        n = np.array([-u[1], u[0]])  # perpendicular, pointing down the face
        centre = 0.5 * (c0 + c1)
        up = LID_HEIGHT * width
        half = 0.55 * width
        down = 0.6 * up
        top = -(up + BROW_MARGIN * width)
        rel_x, rel_y = map_x - centre[0], map_y - centre[1]
        sc, tc = rel_x * u[0] + rel_y * u[1], rel_x * n[0] + rel_y * n[1]  # each output pixel in the eye's frame
        g = np.sqrt(np.clip(1.0 - (sc / half) ** 2, 0.0, 1.0))
        upper, rest = -up * g, LID_REST * down * g
        inside = (g > 0) & (tc >= top) & (tc <= rest)
        t_src = np.where(inside, top + (tc - top) * (upper - top) / np.maximum(rest - top, 1e-6), tc)
        shift = t_src - tc  # along n only
        src_x += shift * n[0]
        src_y += shift * n[1]
    return cv2.remap(image, src_x.astype(np.float32), src_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT101)


def repainted_views(views: torch.Tensor, paint) -> torch.Tensor | None:
    """Views (V, 3, S, S) in [0, 1] with ``paint(rgb (S, S, 3) uint8, j) -> image or None`` applied to each, or None
    when the source view (j = 0) cannot be painted; a reference view that cannot is kept as it is."""
    from odecam.engine.images import to_image

    out = views.clone()
    for j in range(views.shape[0]):
        painted = paint(to_image(views[j:j + 1]), j)
        if painted is None:
            if j == 0:
                return None
            continue
        out[j] = torch.from_numpy(painted).permute(2, 0, 1).to(views.dtype) / 255.0
    return out


def closed_eye_views(views: torch.Tensor) -> torch.Tensor | None:
    """The avatar's views (V, 3, S, S) in [0, 1] with every view's eyes closed (:func:`close_eyes`), or None when
    no face (or no eye corners) is found in the source view. A reference view without a face is kept as it is."""
    from odecam.realtime.face_detection import detect_faces, eye_corners

    def paint(rgb: np.ndarray, j: int) -> np.ndarray | None:
        faces = detect_faces(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), detect_height=max(320, rgb.shape[0]))
        corners = eye_corners(rgb, faces[0]) if faces else None
        return None if corners is None else close_eyes(rgb, corners)

    return repainted_views(views, paint)


@torch.no_grad()
def closed_eye_state(model, state: dict[str, torch.Tensor], views: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """The avatar state of the closed-eye views with the open avatar's keypoints (so the same motion), or None
    when the avatar's eyes cannot be found. ``views`` (1, V, 3, S, S) as :class:`~odecam.engine.avatar.Avatar`
    holds them; ``state`` its open state."""
    closed = closed_eye_views(views[0])
    return None if closed is None else repainted_state(model, state, closed.to(views))


#: the avatar state entries that differ between the photo and a repainted copy of it (the rest is the photo's)
BLENDED_KEYS = ("features", "image_small", "image")


@torch.no_grad()
def repainted_state(model, state: dict[str, torch.Tensor], views: torch.Tensor) -> dict[str, torch.Tensor]:
    """The avatar state of repainted views (V, 3, S, S) in [0, 1] with ``state``'s keypoints (so the same motion):
    the :data:`BLENDED_KEYS` (F_S, F_C's view images, the image skip's) recomputed, the rest kept."""
    out = dict(state)
    out["features"] = model.generator.encode(views)
    out["image_small"] = model.generator.dense_motion_network.prepare_view(views, state["kp"])["image_small"]
    if "image" in state:  # the skip's margin stays the photo's (Generator.skip_images)
        out["image"] = model.generator.skip_images(views, like=state["image"])
    return out
