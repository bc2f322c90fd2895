"""Typed model configuration and presets.

A :class:`ModelConfig` describes the whole network; each sub-config belongs to one module named after
the paper's symbol it implements (F_K, F_C, F_E, F_A, F_G). The paper's ablations are switches:

* ``evolution.enabled = False``   -> "w/o Mot. Evol." (T = T~, no ODE);
* ``appearance.enabled = False``  -> "w/o App. Assist." (no self-appearance flow);
* ``num_refs = 0..6``             -> number of reference views N fused by the generator.

Presets: :func:`preset` (``"vox256"``, ``"lite"``, ``"tiny"``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

MotionMode = Literal["zero_order", "first_order"]
ODEMethod = Literal["euler", "midpoint", "rk4"]


@dataclass
class KeypointConfig:
    """F_K: hourglass keypoint detector on a downscaled image (FOMM ``KPDetector``)."""

    num_kp: int = 10
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    scale_factor: float = 0.25
    estimate_jacobian: bool = False
    head_kernel: int = 7
    head_padding: int = 0
    antialias: bool = True  # FOMM's Gaussian blur before subsampling; False = area downsampling (cheaper)
    depthwise: bool = False  # depthwise-separable convolutions in the hourglass (lite)


@dataclass
class CoarseMotionConfig:
    """F_C: K+1 displacements -> coefficient maps alpha -> coarse field T~ (Eq. 2-3)."""

    mode: MotionMode = "zero_order"
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01
    head_kernel: int = 7
    antialias: bool = True
    depthwise: bool = False


@dataclass
class EvolutionConfig:
    """F_E: motion evolution dT/dt = F_E(T, t) on t in [0, 1] (Eq. 4)."""

    enabled: bool = True
    hidden: int = 32
    num_layers: int = 3
    context_channels: int = 8  # channels of F_C's features that condition F_E (0 = none)
    method: ODEMethod = "euler"
    steps: int = 4
    adjoint: bool = False  # training only: torchdiffeq.odeint_adjoint instead of odeint


@dataclass
class AppearanceConfig:
    """F_A: self-appearance flow T_App that moves features into occluded regions (Eq. 5)."""

    enabled: bool = True
    hidden: int = 64
    num_blocks: int = 2
    depthwise: bool = False


@dataclass
class GeneratorConfig:
    """F_G: encoder / occlusion-aware decoder, with per-view confidence fusion (Eq. 6)."""

    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    depthwise: bool = False
    estimate_occlusion: bool = True
    first_kernel: int = 7
    final_kernel: int = 7
    image_skip: bool = False  # odecam addition: blend the fused motion-warped view images into the output


@dataclass
class ModelConfig:
    """The whole network. ``image_size`` is the square output resolution."""

    name: str = "custom"
    image_size: int = 256
    num_channels: int = 3
    num_refs: int = 0
    keypoints: KeypointConfig = field(default_factory=KeypointConfig)
    motion: CoarseMotionConfig = field(default_factory=CoarseMotionConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build a config from a (possibly partial) dict; unknown keys are refused with a clear error."""
        subs = {f.name: f.type for f in dataclasses.fields(cls)}
        sub_types = {
            "keypoints": KeypointConfig,
            "motion": CoarseMotionConfig,
            "evolution": EvolutionConfig,
            "appearance": AppearanceConfig,
            "generator": GeneratorConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in subs:
                raise ValueError(f"unknown model config key {key!r}; expected one of {sorted(subs)}")
            if key in sub_types:
                sub_cls = sub_types[key]
                known = {f.name for f in dataclasses.fields(sub_cls)}
                bad = set(value) - known
                if bad:
                    raise ValueError(f"unknown keys {sorted(bad)} in model config section {key!r}")
                kwargs[key] = sub_cls(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "ModelConfig":
        """Copy with top-level fields replaced, and dotted sub-fields (``"evolution.steps"``)."""
        data = self.to_dict()
        for key, value in changes.items():
            node = data
            parts = key.replace("__", ".").split(".")
            for p in parts[:-1]:
                node = node[p]
            if parts[-1] not in node:
                raise ValueError(f"unknown config field {key!r}")
            node[parts[-1]] = value
        return ModelConfig.from_dict(data)


def vox256() -> ModelConfig:
    """First Order Motion Model vox-256 backbones (parameter names and shapes match its checkpoint),
    plus the paper's F_E, F_A and fusion. First-order motion and jacobians, as FOMM runs them."""
    return ModelConfig(
        name="vox256",
        image_size=256,
        keypoints=KeypointConfig(estimate_jacobian=True),
        motion=CoarseMotionConfig(mode="first_order"),
        evolution=EvolutionConfig(hidden=64, num_layers=3, context_channels=16, steps=4),
        appearance=AppearanceConfig(hidden=128, num_blocks=3),
        generator=GeneratorConfig(),
    )


def lite() -> ModelConfig:
    """Built for real time on a CPU at 256x256 output: thin depthwise-separable nets, motion at 64x64
    for F_K and 32x32 for F_C / F_E, a light decoder. Zero-order motion as in the paper."""
    return ModelConfig(
        name="lite",
        image_size=256,
        num_refs=1,
        keypoints=KeypointConfig(
            block_expansion=16, max_features=128, num_blocks=4, head_kernel=3, head_padding=1,
            antialias=False, depthwise=True,
        ),
        motion=CoarseMotionConfig(
            block_expansion=16, max_features=128, num_blocks=3, scale_factor=0.125, head_kernel=3,
            antialias=False, depthwise=True,
        ),
        evolution=EvolutionConfig(hidden=16, num_layers=2, context_channels=4, steps=4),
        appearance=AppearanceConfig(hidden=16, num_blocks=2, depthwise=True),
        generator=GeneratorConfig(
            block_expansion=16, max_features=64, num_down_blocks=2, num_bottleneck_blocks=1, depthwise=True,
            final_kernel=3, image_skip=True,
        ),
    )


def tiny() -> ModelConfig:
    """A very small network at 64x64 for unit tests."""
    return ModelConfig(
        name="tiny",
        image_size=64,
        keypoints=KeypointConfig(
            num_kp=5, block_expansion=8, max_features=32, num_blocks=3, head_kernel=3, head_padding=1,
            antialias=False,
        ),
        motion=CoarseMotionConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.5,
                                  head_kernel=3, antialias=False),
        evolution=EvolutionConfig(hidden=8, num_layers=2, context_channels=4, steps=2),
        appearance=AppearanceConfig(hidden=8, num_blocks=1),
        generator=GeneratorConfig(block_expansion=8, max_features=32, num_down_blocks=2, num_bottleneck_blocks=1,
                                  image_skip=True),
    )


PRESETS = {"vox256": vox256, "lite": lite, "tiny": tiny}


def preset(name: str) -> ModelConfig:
    """Return a fresh copy of a preset config by name."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
