"""The paper's networks, one module per symbol: F_K (keypoint_detector), F_C (coarse_motion),
F_E (motion_evolution + ode_solvers), F_A (appearance_flow), F_G (generator); composed in
motion_transfer."""

from odecam.model.motion_transfer import MotionTransferModel

__all__ = ["MotionTransferModel"]
