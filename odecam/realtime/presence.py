"""Nobody in view: the avatar rests instead of following F_K on an empty room.

F_K finds keypoints in any picture. On a room with nobody in it they are nonsense, and the avatar, moved by their
offset from the neutral pose, melts: a face pulled apart in the video call while its owner fetches a coffee (the
default model on a grey room: its frames 47 grey levels from its rest pose on average; pictured in
``benchmarks/results/nobody_in_view.png``). So once the face detector has missed the face for ``absent_after``
frames (:meth:`Presence.in_view`; 0.6 s at 30 fps), F_K is not run and the driving pose glides from the last one
seen to the neutral pose (relative motion then gives the avatar's own photo) over ``fade`` seconds; when a face is
found again it glides back to the driver's. ``live``, ``serve`` and ``send`` use it::

    presence = Presence()
    w = presence.update(presence.in_view(framing), timestamp)
    if presence.present:
        value, jac = presence.hold(*smoother(*animator.keypoints(rgb, roll), timestamp))
    else:
        value, jac = presence.held        # F_K not run
    frame = animator.render_rest() if w == 0.0 or value is None else \\
        animator.render_tensor(*presence.towards_neutral(value, jac, animator.motion))
"""

from __future__ import annotations

import torch

__all__ = ["Presence"]


class Presence:
    """Whether someone is in view, eased into a weight w in [0, 1] of the driver's pose against the rest pose.

    ``fade``: seconds for w to go from 1 to 0 (the face gone) or back (found again); 0 = at once. ``absent_after``:
    frames the face detector must miss the face in a row before it counts as gone (:meth:`in_view`): 18 (0.6 s at
    30 fps; the framer keeps its crop on the face for 45). On 41 talking-head clips (carphone and 40 of
    ``../shared/data/faces/videos``, 300 frames each at most) the longest run of misses with the person in view was
    12 frames, and with a hand drawn over the mouth and chin (``scripts/hand_over_face.py``; carphone, d6) 12 and 3:
    a hand does not send the avatar to rest."""

    def __init__(self, fade: float = 0.4, absent_after: int = 18) -> None:
        if not fade >= 0 or not absent_after >= 1:
            raise ValueError(f"fade must be 0 seconds or more and absent_after 1 frame or more, got {fade} and "
                             f"{absent_after}.")
        self.fade = float(fade)
        self.absent_after = int(absent_after)
        self.reset()

    def in_view(self, framing, following: bool = True) -> bool:
        """Whether a :class:`~odecam.realtime.framing.Framing` shows someone: a face tracked and found by the
        detector within the last ``absent_after`` frames. Not ``following`` the face (a fixed crop: no detector),
        always."""
        return not following or (framing.face is not None and framing.missed < self.absent_after)

    def reset(self) -> None:
        """Nobody seen yet: at rest."""
        self.weight = 0.0
        self.present = False
        self.held: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self._last: float | None = None

    def update(self, present: bool, timestamp: float) -> float:
        """A frame at ``timestamp`` (seconds) with (``present``) or without a face in view -> the new weight w. The
        first frame starts where it is (a face then is taken as the neutral pose, which is the avatar's own; nobody
        is rest); after it, w moves by the time since the last frame over ``fade``."""
        first = self._last is None
        dt = 0.0 if first else max(0.0, float(timestamp) - self._last)
        self._last = float(timestamp)
        self.present = bool(present)
        goal = 1.0 if present else 0.0
        step = 1.0 if first or self.fade == 0 else dt / self.fade
        self.weight = min(goal, self.weight + step) if goal > self.weight else max(goal, self.weight - step)
        if self.weight == 0.0 and not self.present:
            self.held = (None, None)  # at rest: the next face starts from rest, not from a pose long gone
        return self.weight

    def hold(self, value: torch.Tensor, jac: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Remember the driver's pose of this frame (what the glide to rest starts from); returns it."""
        self.held = (value, jac)
        return value, jac

    def towards_neutral(self, value: torch.Tensor, jac: torch.Tensor | None, motion,
                        rest: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The driving pose (1, K, 2) moved towards ``motion``'s neutral pose (a
        :class:`~odecam.engine.relative_motion.RelativeMotion`; taken from this pose when it has none) by 1 - w:
        neutral + w (value - neutral). At w = 1 the pose itself. ``rest``: for an animator without relative motion
        (absolute keypoints), the avatar's own keypoints (1, K, 2), glided to instead."""
        if rest is None and motion.neutral is None:
            motion.set_neutral(value, jac)
        if self.weight >= 1.0:
            return value, jac
        target = motion.neutral if rest is None else rest
        return target + self.weight * (value - target), jac
