"""The per-frame engine: a driving frame (or driving keypoints) in, an animated avatar frame out.

    frame -> F_K -> relative motion -> F_C -> ODE (F_E) -> warp -> F_A + fusion -> decoder -> frame

:class:`Animator` never recomputes what the :class:`~odecam.engine.avatar.Avatar` caches. It records
per-stage latency (``keypoints``, ``coarse_motion``, ``ode``, ``warp``, ``appearance``, ``decoder``,
``total``) in :attr:`Animator.timings`; compiled backends (``backend='onnxruntime'`` etc., see
:mod:`odecam.engine.backends`) report ``keypoints``, ``frame`` and ``total``. NaN/Inf out of the ODE is detected, counted in
:attr:`Animator.ode_fallbacks`, and that frame uses the coarse field T~ instead.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from odecam.checkpoint import role_indices
from odecam.config import DEFAULT_LIP_GAIN, LIP_GAIN_RANGE
from odecam.engine.avatar import Avatar
from odecam.engine.backends import Backend, get_backend
from odecam.engine.images import check_frame, to_image, to_tensor
from odecam.engine.mouth import MouthOpening, mouth_indices
from odecam.engine.relative_motion import LIP_ROLES, RelativeMotion
from odecam.engine.timing import StageTimes
from odecam.errors import OdecamError
from odecam.model import MotionTransferModel

log = logging.getLogger(__name__)


def lip_retargeting(model: MotionTransferModel, lip_gain: float | None) -> tuple[tuple[int, int] | None, float]:
    """(inner-lip keypoint indices or None, the gain to use) for a model and a requested gain (None = default).

    A gain other than 1 for a model without lip keypoints is refused with one sentence."""
    lips = role_indices(tuple(getattr(model, "keypoint_roles", ())), LIP_ROLES)
    if lip_gain is None:
        return lips, DEFAULT_LIP_GAIN if lips is not None else 1.0
    lo, hi = LIP_GAIN_RANGE
    if not (lo <= float(lip_gain) <= hi):
        raise OdecamError(f"--lip-gain {lip_gain:g} is out of range; use a number from {lo:g} to {hi:g} "
                          "(1 = the driver's mouth as it is).")
    if float(lip_gain) != 1.0 and lips is None:
        raise OdecamError(f"--lip-gain {lip_gain:g} needs a model whose keypoints are tied to the inner lips "
                          "(trained with loss.landmarks, like the shipped default); use --lip-gain 1 with this one.")
    return lips, float(lip_gain)


def blink_retargeting(model: MotionTransferModel, blink: bool | None):
    """(eye reader, blink tracker) for a model and a request (None = on when the model can), or (None, None).

    ``blink=True`` with a model whose keypoints do not name the upper eyelids is refused with one sentence."""
    from odecam.engine.blink import BlinkTracker, EyeReader, eyelid_indices

    if blink is False:
        return None, None
    lids = eyelid_indices(tuple(getattr(model, "keypoint_roles", ())))
    if lids is None:
        if blink:
            raise OdecamError("--blink needs a model whose keypoints are tied to the upper eyelids (trained with "
                              "loss.landmarks, like the shipped default); use --no-blink with this one.")
        return None, None
    try:
        reader = EyeReader(lids)
    except Exception as exc:  # noqa: BLE001 - a missing or broken weights file: say so, never a traceback
        from odecam.engine.blink import EYE_WEIGHTS

        text = (f"the eye-openness weights {EYE_WEIGHTS} are missing or broken ({type(exc).__name__}); reinstall "
                "odecam, or use --no-blink")
        if blink:
            raise OdecamError(text + ".") from exc
        log.warning("blink retargeting is off: %s", text)
        return None, None
    return reader, BlinkTracker()


class Animator:
    """Animate an avatar from driving frames or driving keypoints.

    Args:
        model: the network (eval mode is set here).
        avatar: the cached avatar.
        relative: move the avatar by the driving motion relative to a neutral pose (FOMM's relative
            mode); False uses the driving keypoints as they are.
        adapt_scale: movement-scale adaptation (convex-hull areas) in relative mode.
        ode_steps: fixed ODE steps per frame (default: the config's).
        backend: 'torch' (eager, default), 'torchscript', 'onnxruntime' or 'tensorrt', or a
            :class:`~odecam.engine.backends.Backend` (see :func:`~odecam.engine.backends.get_backend`).
        precision: 'fp32' or 'fp16' (tensorrt; torch and torchscript on CUDA).
        lip_gain: lip retargeting in relative mode (:mod:`odecam.engine.relative_motion`): how many times
            the driver's mouth opening beyond neutral the avatar's opens. None: :data:`DEFAULT_LIP_GAIN` for a
            model whose keypoints are tied to the inner lips (``model.keypoint_roles``), else 1 (off).
        blink: blink retargeting (:mod:`odecam.engine.blink`): the avatar closes its eyes when the driver does.
            None: on for a model whose keypoints name the upper eyelids (like the shipped default) and an
            avatar whose eyes are found, else off; True: the same, but a model without eyelid keypoints is
            refused; False: off. :attr:`blink_active` says whether the current avatar blinks.
        mouth_cavity: mouth retargeting (:mod:`odecam.engine.mouth`): an avatar photographed with its teeth
            showing opens onto a dark cavity under its upper teeth instead of stretched teeth. None / True: on for a
            model whose keypoints name the mouth and an avatar whose teeth are found; False: off.
            :attr:`mouth_active` says whether it applies to the current avatar.
    """

    def __init__(self, model: MotionTransferModel, avatar: Avatar, relative: bool = True,
                 adapt_scale: bool = True, ode_steps: int | None = None, backend: str | Backend = "torch",
                 precision: str = "fp32", lip_gain: float | None = None, blink: bool | None = None,
                 mouth_cavity: bool | None = None) -> None:
        self.model = model.eval()
        self.lips, self.lip_gain = lip_retargeting(model, lip_gain)
        self._eye_reader, self._blink_tracker = blink_retargeting(model, blink)
        self.blink_amount = 0.0  # the driver's last blink amount b in [0, 1]
        self.blink_active = False
        self._mouth_indices = mouth_indices(tuple(getattr(model, "keypoint_roles", ()))) \
            if mouth_cavity is not False else None
        self._mouth: MouthOpening | None = None
        self.mouth_amount = 0.0  # how far the avatar's mouth opens onto its cavity, in [0, 1]
        self.mouth_active = False
        self.backend = get_backend(backend, model, precision=precision, ode_steps=ode_steps)
        self.relative = relative
        self.adapt_scale = adapt_scale
        self.ode_steps = ode_steps
        self.timings = StageTimes()
        self.ode_fallbacks = 0
        self.frames = 0
        size = model.cfg.image_size
        param = next(model.parameters())
        self._pool = self.backend.keypoint_pool  # F_K's area pooling done on the frame, beside the graph
        self._input = torch.empty(1, 3, size // self._pool, size // self._pool, dtype=param.dtype, device=param.device)
        self._last_kp: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._calibrate_next = False
        self.set_avatar(avatar)

    # -- avatar and calibration ------------------------------------------------------------------
    def set_avatar(self, avatar: Avatar) -> None:
        """Switch to another cached avatar; the neutral pose is kept."""
        neutral = getattr(self, "motion", None)
        self.avatar = avatar
        self._rest: torch.Tensor | None = None  # render_rest's frame, made on first use
        self.backend.prepare(avatar.state)
        targets = {}
        if self._eye_reader is not None and (closed := avatar.closed_eye_state(self.model)) is not None:
            targets["eyes"] = closed
        if self._mouth_indices is not None and (cavity := avatar.open_mouth_state(self.model)) is not None:
            targets["mouth"] = cavity
        self.backend.set_blend_targets(avatar.state, targets)
        self.blink_active = "eyes" in targets
        self.mouth_active = "mouth" in targets
        self._mouth = MouthOpening(self._mouth_indices, avatar.kp_source) if self.mouth_active else None
        self.mouth_amount = 0.0
        self.motion = RelativeMotion(avatar.kp_source, avatar.jac_source, self.adapt_scale, self.lip_gain, self.lips)
        if neutral is not None and neutral.neutral is not None:
            jac = torch.inverse(neutral.neutral_jac_inv) if neutral.neutral_jac_inv is not None else None
            self.motion.set_neutral(neutral.neutral, jac)

    def set_blink(self, amount: float) -> None:
        """Set the blink amount b in [0, 1] (0 open, 1 shut) for the next frames, e.g. on the receiving end of a
        keypoint stream; a driving frame given to :meth:`__call__` or :meth:`keypoints` sets it again."""
        if not 0.0 <= float(amount) <= 1.0:
            raise OdecamError(f"blink amount {amount!r} is out of range; use a number from 0 (open) to 1 (shut).")
        self.blink_amount = float(amount)

    def reset_blink(self) -> None:
        """Forget the driver's eye-openness history (a new driver, or after a warm-up on the avatar itself)."""
        if self._blink_tracker is not None:
            self._blink_tracker.reset()
        self.blink_amount = 0.0

    def recalibrate(self) -> None:
        """Take the current driving pose as neutral (the next frame's, if none was seen yet)."""
        if self._last_kp is None:
            self._calibrate_next = True
        else:
            self.motion.set_neutral(*self._last_kp)

    # -- per frame -------------------------------------------------------------------------------
    @torch.no_grad()
    def keypoints(self, frame: np.ndarray, roll: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw F_K keypoints of a driving frame (H, W, 3) uint8 RGB -> ((1, K, 2), (1, K, 2, 2) or None).

        ``roll``: degrees the frame was turned clockwise to level the face (``Framing.model_input()``);
        the keypoints are turned back by ``+roll`` about the centre, so they are the keypoints of the
        unturned frame: :func:`unroll_keypoints`. 0 returns F_K's output untouched.
        """
        with self.timings("keypoints"):
            x = to_tensor(check_frame(frame), self.model.cfg.image_size, out=self._input, pool=self._pool)
            value, jac = self.backend.run_keypoints(x)
        if self.blink_active:
            with self.timings("eyes"):
                self.blink_amount = self._blink_tracker.update(self._eye_reader(frame, value))
        return unroll_keypoints(value, jac, roll) if roll else (value, jac)

    def __call__(self, frame: np.ndarray, roll: float = 0.0) -> np.ndarray:
        """Driving frame (H, W, 3) uint8 RGB (levelled by ``roll`` degrees, see :meth:`keypoints`) -> avatar
        frame (S, S, 3) uint8 RGB."""
        t0 = time.perf_counter()
        value, jac = self.keypoints(frame, roll)
        return self._render(value, jac, t0)

    def animate_keypoints(self, value: np.ndarray | torch.Tensor,
                          jacobian: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
        """Driving keypoints (K, 2) in [-1, 1] (+ jacobians (K, 2, 2)) -> avatar frame (S, S, 3) uint8.

        The receiving end of a keypoint stream: same path as :meth:`__call__` after F_K.
        """
        t0 = time.perf_counter()
        k = self.model.cfg.keypoints.num_kp
        v = torch.as_tensor(np.asarray(value, dtype=np.float32)).to(self._input.device)
        if v.shape != (k, 2):
            raise ValueError(f"driving keypoints must have shape ({k}, 2), got {tuple(v.shape)}")
        j = None
        if jacobian is not None:
            j = torch.as_tensor(np.asarray(jacobian, dtype=np.float32)).to(self._input.device).view(1, k, 2, 2)
        return self._render(v.unsqueeze(0), j, t0)

    @torch.no_grad()
    def render_tensor(self, value: torch.Tensor, jac: torch.Tensor | None) -> torch.Tensor:
        """Raw driving keypoints (1, K, 2) -> avatar image (1, 3, S, S) float, with relative motion."""
        self._last_kp = (value, jac)
        if self._calibrate_next:
            self.motion.set_neutral(value, jac)
            self._calibrate_next = False
        if self.relative:
            value, jac = self.motion(value, jac)
        if not self.model.cfg.keypoints.estimate_jacobian:
            jac = None
        if self._mouth is not None:
            self.mouth_amount = self._mouth(value)
        if self.blink_active or self.mouth_active:
            self.backend.blend_views({"eyes": self.blink_amount, "mouth": self.mouth_amount})
        prediction, ode_ok = self.backend.run_frame(value, jac, timer=self.timings)
        if not ode_ok:
            self.ode_fallbacks += 1
            log.warning("ODE produced NaN/Inf on frame %d; used the coarse motion field instead", self.frames)
        return prediction

    @property
    def last_keypoints(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The raw driving keypoints (1, K, 2) (and jacobians) of the last frame rendered, before relative motion;
        None before the first."""
        return self._last_kp

    @torch.no_grad()
    def render_rest(self) -> torch.Tensor:
        """The avatar at rest (1, 3, S, S) float: its own pose (the source's keypoints, absolute), eyes open, mouth
        closed: what relative motion gives at the neutral pose. Rendered once per avatar and kept (the same tensor
        each call; do not change it): nobody in view costs no model run (:mod:`odecam.realtime.presence`)."""
        if self._rest is None:
            self.blink_amount = self.mouth_amount = 0.0
            if self.blink_active or self.mouth_active:
                self.backend.blend_views({"eyes": 0.0, "mouth": 0.0})
            jac = self.avatar.jac_source if self.model.cfg.keypoints.estimate_jacobian else None
            self._rest = self.backend.run_frame(self.avatar.kp_source, jac)[0].clone()
        return self._rest

    def _render(self, value: torch.Tensor, jac: torch.Tensor | None, t0: float) -> np.ndarray:
        image = to_image(self.render_tensor(value, jac))
        self.frames += 1
        self.timings.add("total", (time.perf_counter() - t0) * 1000.0)
        return image


def unroll_keypoints(value: torch.Tensor, jac: torch.Tensor | None,
                     roll: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keypoints (B, K, 2) in [-1, 1] (x right, y down) of a frame turned by ``-roll`` degrees about its
    centre -> those of the unturned frame: each point turned by ``+roll`` (counter-clockwise on screen)
    about (0, 0), p -> R p with R = [[cos, sin], [-sin, cos]]. Jacobians (B, K, 2, 2) -> R J: J maps the
    keypoint's own reference frame into image coordinates (FOMM's equivariance: a turned image turns J on
    the image side only), so relative motion J_d J_n^-1 and the sparse motion J_s J_d^-1 stay consistent.
    R comes from :func:`unroll_rotation` (cached: no new tensor while the levelling angle stays put)."""
    rot = unroll_rotation(roll, value.dtype, value.device)
    return value @ rot.T, None if jac is None else rot @ jac


_UNROLL: tuple[tuple, torch.Tensor] | None = None  # ((roll, dtype, device), R) of the last call


def unroll_rotation(roll: float, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """R = [[cos, sin], [-sin, cos]] (2, 2) of :func:`unroll_keypoints` for ``roll`` degrees. The last angle's
    tensor is kept and returned again (the same object; do not modify it) while ``roll``, ``dtype`` and
    ``device`` stay the same: the framing's levelling angle is smoothed, it holds still for many frames."""
    global _UNROLL
    key = (float(roll), dtype, torch.device(device))
    last = _UNROLL  # one read: another thread may replace it meanwhile, never half-way
    if last is not None and last[0] == key:
        return last[1]
    r = math.radians(roll)
    c, s = math.cos(r), math.sin(r)
    rot = torch.tensor([[c, s], [-s, c]], dtype=dtype, device=device)
    _UNROLL = (key, rot)
    return rot
