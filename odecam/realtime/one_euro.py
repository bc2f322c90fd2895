"""One Euro filter (Casiez, Roussel and Vogel, CHI 2012) over numpy arrays.

The filter is an adaptive low-pass: when the signal is slow its cutoff is ``min_cutoff``
(strong smoothing, no jitter); when it moves fast the cutoff rises with the filtered speed
(``min_cutoff + beta * |dx/dt|``) so the output keeps up with the motion (little lag).

It works element-wise on arrays of any fixed shape, e.g. keypoints ``(K, 2)`` or
jacobians ``(K, 2, 2)``, and takes explicit timestamps in seconds so an irregular
frame rate (dropped webcam frames, slow inference) is handled correctly.

Units: ``beta`` multiplies the speed in *signal units per second*. The defaults suit
keypoints in normalised ``[-1, 1]`` image coordinates at webcam frame rates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["OneEuroConfig", "OneEuroFilter", "smoothing_alpha"]


@dataclass
class OneEuroConfig:
    """Parameters of a :class:`OneEuroFilter`.

    Attributes:
        min_cutoff: cutoff frequency (Hz) when the signal is still; lower = less jitter.
        beta: speed coefficient; higher = less lag during fast motion.
        d_cutoff: cutoff frequency (Hz) of the low-pass applied to the speed estimate.
        enabled: when False the filter passes its input through unchanged.
    """

    min_cutoff: float = 0.5
    beta: float = 1.0
    d_cutoff: float = 1.0
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.min_cutoff > 0:
            raise ValueError(f"min_cutoff must be a positive frequency in Hz, got {self.min_cutoff}.")
        if not self.d_cutoff > 0:
            raise ValueError(f"d_cutoff must be a positive frequency in Hz, got {self.d_cutoff}.")
        if self.beta < 0:
            raise ValueError(f"beta must be zero or positive, got {self.beta}.")


def smoothing_alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Exponential-smoothing factor of a first-order low-pass with ``cutoff`` Hz over ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Adaptive low-pass filter for a stream of same-shaped arrays.

    Example::

        f = OneEuroFilter(min_cutoff=0.5, beta=1.0)
        smooth_kp = f(keypoints, t=time.monotonic())

    Args:
        min_cutoff, beta, d_cutoff, enabled: see :class:`OneEuroConfig`.
    """

    def __init__(
        self,
        min_cutoff: float = 0.5,
        beta: float = 1.0,
        d_cutoff: float = 1.0,
        enabled: bool = True,
    ) -> None:
        self.config = OneEuroConfig(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff, enabled=enabled)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @classmethod
    def from_config(cls, config: OneEuroConfig) -> "OneEuroFilter":
        """Build a filter from a :class:`OneEuroConfig`."""
        return cls(config.min_cutoff, config.beta, config.d_cutoff, config.enabled)

    @property
    def enabled(self) -> bool:
        """Whether filtering is on; turning it off makes :meth:`__call__` a passthrough."""
        return self.config.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if value and not self.config.enabled:
            self.reset()  # do not resume from a stale state
        self.config.enabled = bool(value)

    def reset(self) -> None:
        """Forget the history: the next sample is returned unchanged and starts a new track."""
        self._x = None
        self._dx = None
        self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter one sample.

        Args:
            x: the new sample; any shape, but the same shape on every call until :meth:`reset`.
            t: its timestamp in seconds (e.g. the capture time from ``time.monotonic()``).

        Returns:
            The filtered sample, same shape as ``x``, dtype of ``x`` if floating else float64.
        """
        arr = np.asarray(x)
        out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
        if not self.config.enabled:
            return arr.astype(out_dtype, copy=True)
        xf = arr.astype(np.float64)
        if self._x is None or self._t is None:
            self._x = xf.copy()
            self._dx = np.zeros_like(xf)
            self._t = float(t)
            return xf.astype(out_dtype)
        if xf.shape != self._x.shape:
            raise ValueError(
                f"OneEuroFilter got shape {xf.shape} after {self._x.shape}; call reset() when the signal changes."
            )
        dt = float(t) - self._t
        if dt <= 0.0:
            # Repeated or out-of-order timestamp: nothing new can be estimated, keep the output.
            return self._x.astype(out_dtype)
        cfg = self.config
        dx = (xf - self._x) / dt
        a_d = smoothing_alpha(cfg.d_cutoff, dt)
        assert self._dx is not None
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = cfg.min_cutoff + cfg.beta * np.abs(self._dx)
        a = smoothing_alpha(cutoff, dt)
        self._x = self._x + a * (xf - self._x)
        self._t = float(t)
        return self._x.astype(out_dtype)
