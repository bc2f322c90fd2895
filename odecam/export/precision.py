"""Reduced-precision inference copies of a model (fp16 on CUDA; bf16 where a CPU has it).

:func:`half_copy` returns a private copy for inference: every BatchNorm that directly follows a
convolution is folded into it in fp32 first (:func:`fold_batchnorm`), then the weights are cast. Folding
matters for ``lite``: its thin layers have small running variances, so an fp16 BatchNorm multiplies the
rounding error of its input by up to ~30; folded, the scale lives in the fp32-computed weights. The parts
of the model that need fp32 (F_K's temperature softmax and soft-argmax, F_C's Gaussian heatmaps, local
motions and softmax, the ODE state, every sampling grid) keep it by themselves (see the model modules).

The copy's parameter names differ from the checkpoint's (folded norms are gone): never save it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from odecam.model.blocks import DownBlock2d, ResBlock2d, SameBlock2d, SeparableConv2d, UpBlock2d


def _fold(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    """conv followed by bn -> one module (a SeparableConv2d folds into its pointwise half)."""
    if isinstance(conv, SeparableConv2d):
        conv.pw = fuse_conv_bn_eval(conv.pw, bn)
        return conv
    return fuse_conv_bn_eval(conv, bn)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold, in place, the BatchNorms that follow a convolution (Down/Up/SameBlock2d: conv -> norm;
    ResBlock2d: conv1 -> norm2) into it. Eval mode only; returns the model. Same function to fp32 rounding."""
    model.eval()
    for m in model.modules():
        if isinstance(m, (DownBlock2d, UpBlock2d, SameBlock2d)) and isinstance(m.norm, nn.BatchNorm2d):
            m.conv = _fold(m.conv, m.norm)
            m.norm = nn.Identity()
        elif isinstance(m, ResBlock2d) and isinstance(m.norm2, nn.BatchNorm2d):
            m.conv1 = _fold(m.conv1, m.norm2)
            m.norm2 = nn.Identity()
    return model


#: submodules an fp16 copy keeps in fp32 by default: the motion path. With the image skip (lite) the output
#: samples the 256 px view images with T, so a coordinate error e moves edges by 127.5 * e pixels: fp16's
#: keypoints (4e-4 off) gave 0.1 max abs error on carphone -> astronaut. F_K, F_C and F_E are about 10% of
#: lite's FLOPs (they run at 64 and 32 px); the generator (encoder, F_A, decoder) runs in fp16.
MOTION_MODULES = ("kp_detector", "generator.dense_motion_network", "generator.evolution")


def half_copy(model: nn.Module, dtype: torch.dtype = torch.float16, device: str | torch.device | None = None,
              fold: bool = True, fp32_modules: tuple[str, ...] = MOTION_MODULES) -> nn.Module:
    """An inference copy in ``dtype`` (BatchNorms folded first unless ``fold=False``), on ``device``; the
    submodules named in ``fp32_modules`` stay fp32 (each module casts its inputs to its weights' dtype)."""
    m = copy.deepcopy(model).eval().float()
    if device is not None:
        m = m.to(device)
    with torch.no_grad():
        if fold:
            fold_batchnorm(m)
        kept = {id(k) for name in fp32_modules for k in m.get_submodule(name).modules()}
        for mod in m.modules():  # cast module by module, never through fp16 and back for the kept ones
            if id(mod) not in kept:
                mod._apply(lambda t: t.to(dtype) if t.is_floating_point() else t, recurse=False)
    return m
