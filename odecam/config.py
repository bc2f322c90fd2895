"""Typed model configuration and presets.

A :class:`ModelConfig` describes the whole network; each sub-config belongs to one module named after
the paper's symbol it implements (F_K, F_C, F_E, F_A, F_G). The paper's ablations are switches:

* ``evolution.enabled = False``   -> "w/o Mot. Evol." (T = T~, no ODE);
* ``appearance.enabled = False``  -> "w/o App. Assist." (no self-appearance flow);
* ``num_refs = 0..6``             -> number of reference views N fused by the generator.

Presets: :func:`preset` (``"vox256"``, ``"lite"``, ``"tiny"``).

Every config that comes from outside (a checkpoint's metadata or ``.json``, a training config, ``--set``
overrides) is checked by :func:`validate_config` before anything is built: each field's type and a range
the architecture can use (``image_size`` 64..1024 in multiples of 32, ``keypoints.num_kp`` 1..64,
``evolution.steps`` 1..64, a known ``evolution.method`` ...), plus the sizes that must divide (each
hourglass halves its input ``num_blocks`` times). A violation raises :class:`~odecam.errors.ConfigError`
with one sentence naming the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from odecam.errors import ConfigError

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
    #: an odecam switch for speed with N >= 1 references: F_A runs once, on the views' fusion
    #: (sum_j C~_j F~_j with occlusion sum_j C~_j O_j), instead of once per view and then fused (Eq. 5, 6).
    #: With N = 0 (one view, C~ = 1) both compute the same.
    fused: bool = False


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
    #: odecam addition (speed): 2 or 4 drops the last one or two up-blocks; the output convolutions (RGB, and M
    #: with the image skip) then run at 1/2 or 1/4 resolution with 4 or 16 outputs per channel, put at full
    #: resolution by ``pixel_shuffle`` (ESPCN). 1: the up-blocks go all the way (the paper's decoder)
    pixel_shuffle: int = 1
    #: odecam addition: sigma, in output pixels, of a Gaussian blur of the image skip's mask M before the blend
    #: (2 ceil(3 sigma) + 1 taps, reflected at the border); 0 = off. A pixel-shuffle head gives M in 2 x 2 (and
    #: its features' 4 x 4) blocks, which show where M drops at an open mouth; the blur leaves an M of 1 as it is
    mask_blur: float = 0.0
    #: odecam addition: the image skip's view images reach this share of the image side beyond each edge of the
    #: square (P = round(skip_margin * image_size) pixels), so a field that reads past the edge (a nod, a turn)
    #: finds picture, not black: the view reflected at its edge, or, for an avatar made from a photo, the photo's
    #: own surroundings (:class:`odecam.engine.avatar.Avatar`); beyond the margin the image is reflected. 0 = the
    #: square alone with a zero border (as the models were trained)
    skip_margin: float = 0.0
    #: odecam addition, an inference-time switch: the motion field T fades to zero over this share of the side at
    #: the square's edges (smoothstep), so the square's border stays put: the background at the frame's edge is
    #: not dragged with the head (0.1 in the shipped default), and with ``--paste-back`` (0.25) the square blends
    #: into its photo without a moved edge (hair, collar) showing twice in the fade. 0 = off (the field as trained)
    edge_anchor: float = 0.0


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
        """Build a config from a (possibly partial) dict and :func:`validate_config` it.

        Unknown keys, wrong types and values out of the architecture's range raise :class:`ConfigError`
        (also a ``ValueError``) with one sentence naming the field and the allowed values.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a model config must be a JSON object of fields, not {_kind(data)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"unknown model config key {_show(key)}; expected some of {sorted(_FIELDS)}")
            if key in _SECTIONS:
                sub_cls = _SECTIONS[key]
                if not isinstance(value, dict):
                    raise ConfigError(f"model config section {key!r} must be a JSON object of fields, not "
                                      f"{_kind(value)}")
                known = {f.name for f in dataclasses.fields(sub_cls)}
                bad = [k for k in value if k not in known]
                if bad:
                    raise ConfigError(f"unknown keys {sorted(map(str, bad))[:5]} in model config section {key!r}; "
                                      f"expected some of {sorted(known)}")
                kwargs[key] = sub_cls(**value)
            else:
                kwargs[key] = value
        cfg = cls(**kwargs)
        validate_config(cfg)
        return cfg

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelConfig":
        """Parse and validate a JSON config (at most :data:`MAX_CONFIG_BYTES`)."""
        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError(f"the model config is {len(text)} bytes, over the {MAX_CONFIG_BYTES}-byte limit")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long integers, deep nesting
            detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise ConfigError(f"the model config is not valid JSON ({detail})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "ModelConfig":
        """Copy with top-level fields replaced, and dotted sub-fields (``"evolution.steps"``); validated."""
        data = self.to_dict()
        for key, value in changes.items():
            parts = key.replace("__", ".").split(".")
            node = data
            for p in parts[:-1]:
                node = node.get(p) if isinstance(node, dict) else None
            if not isinstance(node, dict) or parts[-1] not in node or (
                    len(parts) == 1 and parts[0] in _SECTIONS) or len(parts) > 2:
                raise ConfigError(f"unknown config field {key!r}; use a field such as image_size, num_refs or "
                                  "evolution.steps (see odecam/config.py)")
            node[parts[-1]] = value
        return ModelConfig.from_dict(data)

    def validate(self) -> "ModelConfig":
        """:func:`validate_config` this config; returns it."""
        validate_config(self)
        return self


_SECTIONS: dict[str, type] = {
    "keypoints": KeypointConfig,
    "motion": CoarseMotionConfig,
    "evolution": EvolutionConfig,
    "appearance": AppearanceConfig,
    "generator": GeneratorConfig,
}
_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}

#: the largest config text read (a real one is about 2 KB)
MAX_CONFIG_BYTES = 64 * 1024

_BOOL = ("bool",)
_KERNEL = ("kernel",)  # an odd whole number from 1 to 15
_SCALE = ("scale",)  # 1/n for a whole n from 1 to 32
#: section -> field -> rule: ("int", lo, hi[, multiple]), ("float", lo, hi), ("choice", what, options), ...
RULES: dict[str, dict[str, tuple]] = {
    "": {"name": ("name",), "image_size": ("int", 64, 1024, 32), "num_channels": ("int", 3, 3),
         "num_refs": ("int", 0, 6)},
    "keypoints": {"num_kp": ("int", 1, 64), "block_expansion": ("int", 1, 128), "max_features": ("int", 1, 1024),
                  "num_blocks": ("int", 1, 5), "temperature": ("float", 0.001, 10.0), "scale_factor": _SCALE,
                  "estimate_jacobian": _BOOL, "head_kernel": _KERNEL, "head_padding": ("int", 0, 7),
                  "antialias": _BOOL, "depthwise": _BOOL},
    "motion": {"mode": ("choice", "motion mode", ("zero_order", "first_order")), "block_expansion": ("int", 1, 128),
               "max_features": ("int", 1, 1024), "num_blocks": ("int", 1, 5), "scale_factor": _SCALE,
               "kp_variance": ("float", 0.0001, 1.0), "head_kernel": _KERNEL, "antialias": _BOOL,
               "depthwise": _BOOL},
    "evolution": {"enabled": _BOOL, "hidden": ("int", 1, 256), "num_layers": ("int", 1, 8),
                  "context_channels": ("int", 0, 256), "method": ("choice", "ODE method", ("euler", "midpoint", "rk4")),
                  "steps": ("int", 1, 64), "adjoint": _BOOL},
    "appearance": {"enabled": _BOOL, "hidden": ("int", 1, 128), "num_blocks": ("int", 1, 5), "depthwise": _BOOL,
                   "fused": _BOOL},
    "generator": {"block_expansion": ("int", 1, 128), "max_features": ("int", 1, 512),
                  "num_down_blocks": ("int", 0, 5), "num_bottleneck_blocks": ("int", 0, 12), "depthwise": _BOOL,
                  "estimate_occlusion": _BOOL, "first_kernel": _KERNEL, "final_kernel": _KERNEL, "image_skip": _BOOL,
                  "pixel_shuffle": ("int", 1, 4), "mask_blur": ("float", 0.0, 4.0),
                  "skip_margin": ("float", 0.0, 0.5), "edge_anchor": ("float", 0.0, 0.5)},
}
#: the ODE step counts a config or ``--ode-steps`` may ask for
MAX_ODE_STEPS = RULES["evolution"]["steps"][2]

#: degrees of roll beyond which an avatar photo's face is turned upright before cropping
#: (:func:`odecam.engine.portrait.find_portrait`; the built-in astronaut rolls 2.7 degrees; 42 of the 99
#: portraits of ../shared/data/faces/stills roll more than 5, 19 more than 8)
LEVEL_MIN_ROLL = 5.0

#: lip retargeting (:func:`odecam.engine.animator.lip_retargeting`): the avatar's mouth opens this many times
#: the driver's opening beyond neutral, for a model with inner-lip keypoints. The shipped default opened it
#: 0.55x as far as the driver on carphone -> astronaut, 0.61x with 1.5 (benchmarks/results/EVALUATION.md)
DEFAULT_LIP_GAIN = 1.5
#: the range ``--lip-gain`` accepts
LIP_GAIN_RANGE = (0.0, 4.0)


def _kind(value: Any) -> str:
    names = {bool: "true/false", str: "a string", float: "a fraction", int: "a whole number", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_int(where: str, value: Any, lo: int, hi: int, multiple: int = 1) -> int:
    """``value`` must be a whole number (not a bool, fraction or string) in [lo, hi], a multiple of ``multiple``."""
    steps = f" in multiples of {multiple}" if multiple > 1 else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} = {_show(value)} must be a whole number from {lo} to {hi}{steps}, "
                          f"not {_kind(value)}")
    if not lo <= value <= hi or value % multiple:
        raise ConfigError(f"{where} = {_show(value)} is out of range; use a whole number from {lo} to {hi}{steps}")
    return value


def check_float(where: str, value: Any, lo: float, hi: float) -> float:
    """``value`` must be a finite number (int or float, not a bool) in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} = {_show(value)} must be a number from {lo:g} to {hi:g}, not {_kind(value)}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(f"{where} = {_show(value)} is out of range; use a number from {lo:g} to {hi:g}")
    return float(value)


def _check_field(where: str, value: Any, rule: tuple) -> None:
    kind = rule[0]
    if kind == "int":
        check_int(where, value, *rule[1:])
    elif kind == "float":
        check_float(where, value, *rule[1:])
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {_show(value)} must be true or false, not {_kind(value)}")
    elif kind == "choice":
        if not isinstance(value, str) or value not in rule[2]:
            raise ConfigError(f"{where} = {_show(value)} is not a known {rule[1]}; use one of {', '.join(rule[2])}")
    elif kind == "kernel":
        check_int(where, value, 1, 15)
        if value % 2 == 0:
            raise ConfigError(f"{where} = {value} must be an odd kernel size from 1 to 15")
    elif kind == "scale":
        check_float(where, value, 1 / 32, 1.0)
        n = round(1 / value)
        if not math.isclose(1 / value, n, rel_tol=1e-6):
            raise ConfigError(f"{where} = {_show(value)} must be 1/n for a whole n from 1 to 32 (1, 0.5, 0.25, "
                              "0.125, ...)")
    elif kind == "name":
        if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
            raise ConfigError(f"name = {_show(value)} must be a printable string of 1 to 64 characters")


def _check_halvings(where: str, side: int, blocks: int, what: str) -> None:
    """An hourglass halves its ``side``-px input ``blocks`` times and must come back to the same size."""
    if side % (2 ** blocks):
        most = 0
        while side % (2 ** (most + 1)) == 0 and most < 6:
            most += 1
        fix = f"use {where} <= {most} or a larger image_size" if most else "use a larger image_size or scale_factor"
        raise ConfigError(f"{where} = {blocks}: the {what} is {side} px, which cannot be halved {blocks} times; {fix}")


def validate_config(cfg: ModelConfig) -> None:
    """Raise :class:`ConfigError` (one sentence: field, value, allowed values) unless every field of ``cfg``
    has the right type and a value the architecture can use. Runs before any module is built."""
    for section, rules in RULES.items():
        node = cfg if not section else getattr(cfg, section)
        if section and not isinstance(node, _SECTIONS[section]):
            raise ConfigError(f"model config section {section!r} must be an object of fields, not {_kind(node)}")
        for f in dataclasses.fields(node):
            if f.name in _SECTIONS:
                continue
            _check_field(f"{section}.{f.name}" if section else f.name, getattr(node, f.name), rules[f.name])
    for section in ("keypoints", "motion", "generator"):
        sub = getattr(cfg, section)
        if sub.max_features < sub.block_expansion:
            raise ConfigError(f"{section}.max_features = {sub.max_features} is below {section}.block_expansion = "
                              f"{sub.block_expansion}; use at least {sub.block_expansion}")
    shuffle, downs = cfg.generator.pixel_shuffle, cfg.generator.num_down_blocks
    if shuffle not in (1, 2, 4) or shuffle > 2 ** downs:
        most = ", ".join(str(f) for f in (1, 2, 4) if f <= 2 ** downs)
        raise ConfigError(f"generator.pixel_shuffle = {shuffle} must be 1, 2 or 4 and replace at most the "
                          f"generator.num_down_blocks = {downs} up-blocks; use {most}")
    size = cfg.image_size
    for section, what in (("keypoints", "keypoint input"), ("motion", "motion input")):
        sub = getattr(cfg, section)
        n = round(1 / sub.scale_factor)
        if size % n:
            raise ConfigError(f"{section}.scale_factor = 1/{n} does not divide image_size {size} into whole pixels; "
                              "use 1/2, 1/4, 1/8, 1/16 or 1/32")
        side = size // n
        _check_halvings(f"{section}.num_blocks", side,
                        sub.num_blocks, f"{what} (image_size {size} x {section}.scale_factor 1/{n})")
    kp = cfg.keypoints
    if kp.head_padding > kp.head_kernel // 2:
        raise ConfigError(f"keypoints.head_padding = {kp.head_padding} is out of range; use 0 to "
                          f"keypoints.head_kernel // 2 = {kp.head_kernel // 2}")
    kp_side = size // round(1 / kp.scale_factor)
    if kp_side + 2 * kp.head_padding < kp.head_kernel:
        raise ConfigError(f"keypoints.head_kernel = {kp.head_kernel} is wider than the {kp_side}-px keypoint map "
                          f"(+ 2 x head_padding {kp.head_padding}); use a smaller kernel or a larger scale_factor")
    features = size // 2 ** cfg.generator.num_down_blocks
    _check_halvings("appearance.num_blocks", features, cfg.appearance.num_blocks,
                    f"feature map (image_size {size} / 2^generator.num_down_blocks)")


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
        return PRESETS[name]().validate()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
