"""The engine: a cached :class:`Avatar` and a per-frame :class:`Animator`."""

from odecam.engine.animator import Animator
from odecam.engine.avatar import Avatar
from odecam.engine.timing import STAGES, StageTimes

__all__ = ["Animator", "Avatar", "STAGES", "StageTimes"]
