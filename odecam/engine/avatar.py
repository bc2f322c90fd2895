"""The avatar cache: everything about the avatar that does not depend on the driving frame.

An :class:`Avatar` is built once from a source image and N optional reference images. It holds, for
each of the V = N + 1 views, the generator's encoder features, F_K's keypoints (and jacobians), and
F_C's driving-independent inputs (downscaled view, view heatmaps). The per-frame path only reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from odecam.engine.images import check_frame, load_image, to_tensor
from odecam.engine.paste_back import Placement
from odecam.errors import InputImageError
from odecam.model import MotionTransferModel

ImageLike = np.ndarray | str | Path

MAX_REFS = 6


def _as_array(img: ImageLike, role: str) -> np.ndarray:
    return load_image(img, role) if isinstance(img, (str, Path)) else check_frame(img, role)


class Avatar:
    """Cached avatar state for one source image and its reference views.

    Attributes: ``views`` (1, V, 3, S, S); ``state`` (see ``MotionTransferModel.prepare_views``);
    ``kp_source`` (1, K, 2); ``jac_source`` (1, K, 2, 2) or None; ``num_views`` V; ``placement``: where the
    source square came from in the user's photo (:class:`odecam.engine.paste_back.Placement`), or None. With a
    placement the image skip's margin (``generator.skip_margin``) around the source view is the photo's own
    surroundings (what a nod or a turn brings into the square), else the view reflected at its edge.
    """

    def __init__(self, model: MotionTransferModel, source: ImageLike, refs: Sequence[ImageLike] = (),
                 name: str | None = None, placement: Placement | None = None) -> None:
        if len(refs) > MAX_REFS:
            raise InputImageError(f"{len(refs)} reference images given; use at most {MAX_REFS}.")
        size = model.cfg.image_size
        param = next(model.parameters())
        self.name = name or (Path(source).stem if isinstance(source, (str, Path)) else "avatar")
        self.source_image = _as_array(source, "source image")
        #: where the source square lies in the user's photo (paste-back, :mod:`odecam.engine.paste_back`), or None
        self.placement = placement
        images = [self.source_image] + [_as_array(r, f"reference image {i + 1}") for i, r in enumerate(refs)]
        views = torch.cat([to_tensor(im, size) for im in images], dim=0).unsqueeze(0)
        self.views = views.to(device=param.device, dtype=param.dtype)
        self.num_views = len(images)
        with torch.no_grad():
            self.state = model.prepare_views(self.views)
        margin = model.generator.skip_margin
        if placement is not None and margin > 0 and "image" in self.state:
            # the image skip's margin of the source view: the photo's own surroundings, not the square reflected
            around = to_tensor(placement.surround(margin), size + 2 * margin).to(self.views)
            self.state["image"][0] = model.generator.skip_images(self.views[0, :1], like=around)[0]
        self.kp_source = self.state["kp"][:1]
        self.jac_source = self.state["jacobian"][:1] if "jacobian" in self.state else None

    def closed_eye_state(self, model: MotionTransferModel) -> dict[str, torch.Tensor] | None:
        """The state of these views with their eyes painted shut and this avatar's keypoints (blink retargeting,
        :func:`odecam.engine.blink.closed_eye_state`); None when the source's eyes are not found. Made once."""
        if not hasattr(self, "_closed"):
            from odecam.engine.blink import closed_eye_state

            self._closed = closed_eye_state(model, self.state, self.views)
        return self._closed

    def open_mouth_state(self, model: MotionTransferModel) -> dict[str, torch.Tensor] | None:
        """The state of these views with their lower teeth painted as a mouth cavity and this avatar's keypoints
        (mouth retargeting, :func:`odecam.engine.mouth.open_mouth_state`); None when the source shows no teeth.
        Made once."""
        if not hasattr(self, "_cavity"):
            from odecam.engine.mouth import open_mouth_state

            self._cavity = open_mouth_state(model, self.state, self.views)
        return self._cavity

    @property
    def num_refs(self) -> int:
        return self.num_views - 1
