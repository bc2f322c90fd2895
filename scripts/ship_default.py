"""Install a trained run as the package's default model: odecam/assets/default.safetensors (+ .json).

Usage: python scripts/ship_default.py runs/lite-default/last.safetensors ["what it was trained on"]
"""

import sys

from odecam.assets import DEFAULT_WEIGHTS
from odecam.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

src = sys.argv[1]
_, _, meta = read_checkpoint(src)
model = load_checkpoint(src)
info = f"{sys.argv[2] if len(sys.argv) > 2 else meta.get('trained_on', '?')}, {meta.get('step', '?')} steps"
path = save_checkpoint(model, DEFAULT_WEIGHTS, extra={"trained_on": info, "step": meta.get("step", "?")})
print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {model.cfg.name} at {model.cfg.image_size}px, trained on {info}")
